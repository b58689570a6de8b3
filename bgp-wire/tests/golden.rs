//! Golden vectors for every message type, checked both ways, and
//! netgauze-bgp-pkt 0.13 as an independent oracle.
//!
//! The files in tests/vectors/golden/ were written by netgauze-bgp-pkt:
//! our encoding of each case in common/cases.rs was parsed by netgauze and
//! re-serialized by netgauze, and that output is the vector. Regenerate
//! with `OVERWRITE=1 cargo test -p bgp-wire --test golden`.

mod common;

use bgp_wire::*;
use common::cases::cases;
use common::vector;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

/// A netgauze parsing context equivalent to ours.
fn ng_cxt(cxt: &DecodeCxt) -> BgpParsingContext {
    let mut c = BgpParsingContext::default();
    c.set_asn4(cxt.four_octet_as);
    // Feed ADD-PATH through an OPEN netgauze parsed itself, so no
    // netgauze-iana types are needed here.
    let fams: Vec<AddPathFamily> = [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        .into_iter()
        .filter(|f| cxt.add_path.contains(*f))
        .map(|family| AddPathFamily {
            family,
            mode: AddPathMode::Both,
        })
        .collect();
    if !fams.is_empty() {
        let o = Message::Open(OpenMsg::new(
            1,
            90,
            "1.1.1.1".parse().unwrap(),
            vec![Capability::AddPath(fams)],
        ));
        let b = o.to_bytes(&DecodeCxt::default()).unwrap();
        let Ok(BgpMessage::Open(open)) =
            BgpMessage::parse(&mut SliceReader::new(&b), &mut c)
        else {
            panic!("netgauze rejected our ADD-PATH OPEN")
        };
        for cap in open.capabilities() {
            c.update_capabilities(cap, false);
        }
    }
    c
}

/// Parses with netgauze and serializes with netgauze.
fn ng_reencode(bytes: &[u8], cxt: &DecodeCxt) -> Result<Vec<u8>, String> {
    let mut c = ng_cxt(cxt);
    let mut r = SliceReader::new(bytes);
    let m = BgpMessage::parse(&mut r, &mut c).map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::new();
    m.write(&mut out).map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

/// Vector file bytes for a case; with OVERWRITE=1 the file is rewritten
/// from netgauze's re-encoding of our bytes first.
fn golden(name: &str, cxt: &DecodeCxt, msg: &Message) -> Vec<u8> {
    let file = format!("golden/{name}.hex");
    if std::env::var_os("OVERWRITE").is_some() {
        let ours = msg.to_bytes(cxt).unwrap();
        let theirs = ng_reencode(&ours, cxt).unwrap();
        let path =
            format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut text = format!(
            "# {name}: serialized by netgauze-bgp-pkt 0.13 from the message\n\
             # built in tests/common/cases.rs (parsed from our encoding);\n\
             # regenerate: OVERWRITE=1 cargo test -p bgp-wire --test golden\n"
        );
        for chunk in theirs.chunks(32) {
            text.push_str(&hex::encode(chunk));
            text.push('\n');
        }
        std::fs::write(path, text).unwrap();
    }
    vector(&file)
}

#[test]
fn golden_vectors_decode_to_the_expected_message() {
    for (name, cxt, msg) in cases() {
        let bytes = golden(name, &cxt, &msg);
        let got = Message::decode(&bytes, &cxt)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, msg, "{name}");
    }
}

#[test]
fn golden_vectors_encode_to_the_same_bytes() {
    for (name, cxt, msg) in cases() {
        let bytes = golden(name, &cxt, &msg);
        let ours = msg.to_bytes(&cxt).unwrap();
        assert_eq!(hex::encode(&ours), hex::encode(&bytes), "{name}");
    }
}

#[test]
fn netgauze_reencodes_our_bytes_identically() {
    // Independent of the files: netgauze must accept what we send and
    // write the same octets back.
    for (name, cxt, msg) in cases() {
        let ours = msg.to_bytes(&cxt).unwrap();
        let theirs = ng_reencode(&ours, &cxt)
            .unwrap_or_else(|e| panic!("{name}: netgauze rejected: {e}"));
        assert_eq!(hex::encode(&theirs), hex::encode(&ours), "{name}");
    }
}

#[test]
fn gobgp_vectors_parse_the_same_in_netgauze() {
    // GoBGP's bytes, re-encoded by netgauze, decode to what we decode.
    let cxt = DecodeCxt::four_octet();
    for name in common::vectors_in("gobgp") {
        let bytes = vector(&name);
        let theirs = ng_reencode(&bytes, &cxt)
            .unwrap_or_else(|e| panic!("{name}: netgauze: {e}"));
        let a = Message::decode(&bytes, &cxt).unwrap();
        let b = Message::decode(&theirs, &cxt).unwrap();
        assert_eq!(a, b, "{name}");
    }
}
