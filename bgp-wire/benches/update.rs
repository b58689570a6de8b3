//! UPDATE decode/encode throughput (prefixes/s): one 4096-octet UPDATE
//! full of /24s, and a 1M-prefix stream, with netgauze-bgp-pkt decoding
//! the same bytes side by side. Run: cargo bench -p bgp-wire --bench update

use bgp_wire::*;
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

/// `n` consecutive /24s from 10.0.0.0.
fn prefixes(n: u32) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000u32 + (i << 8));
            Nlri::new(ipnetwork::IpNetwork::V4(
                ipnetwork::Ipv4Network::new(a, 24).unwrap(),
            ))
        })
        .collect()
}

fn attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(&[65001, 65002])),
        med: Some(10),
        communities: vec![Community::new(65001, 1)],
        ..PathAttrs::default()
    }
}

/// Packs `nlri` into back-to-back UPDATEs; returns bytes and frame ends.
fn stream(nlri: &[Nlri], cxt: &DecodeCxt) -> (BytesMut, Vec<(usize, usize)>) {
    let mut out = BytesMut::new();
    let nh = NextHop::V4("192.0.2.1".parse().unwrap());
    pack_reach(Family::IPV4_UNICAST, &attrs(), nh, nlri, cxt, &mut out)
        .unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(n) = frame_len(&out[at..], false).unwrap() {
        frames.push((at, at + n));
        at += n;
    }
    (out, frames)
}

fn bench(c: &mut Criterion) {
    let cxt = DecodeCxt::four_octet();
    for (name, n) in [("one_4096_msg", 1013u32), ("stream_1m", 1_000_000)] {
        let nlri = prefixes(n);
        let (buf, frames) = stream(&nlri, &cxt);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(u64::from(n)));
        if n > 10_000 {
            g.sample_size(10);
        }
        g.bench_function("bgp_wire_decode", |b| {
            b.iter(|| {
                let mut count = 0;
                for &(s, e) in &frames {
                    if let Ok(Message::Update(u)) =
                        Message::decode(&buf[s..e], &cxt)
                    {
                        count += u.nlri.len();
                    }
                }
                assert_eq!(count, n as usize);
            })
        });
        g.bench_function("netgauze_decode", |b| {
            b.iter(|| {
                let mut ok = 0;
                for &(s, e) in &frames {
                    let mut ng = BgpParsingContext::default();
                    let mut r = SliceReader::new(&buf[s..e]);
                    if BgpMessage::parse(&mut r, &mut ng).is_ok() {
                        ok += 1;
                    }
                }
                assert_eq!(ok, frames.len());
            })
        });
        g.bench_function("bgp_wire_encode", |b| {
            let mut out = BytesMut::with_capacity(buf.len());
            let nh = NextHop::V4("192.0.2.1".parse().unwrap());
            b.iter(|| {
                out.clear();
                pack_reach(
                    Family::IPV4_UNICAST,
                    &attrs(),
                    nh,
                    &nlri,
                    &cxt,
                    &mut out,
                )
                .unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
