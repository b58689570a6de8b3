//! In-process transit benchmark of the sans-IO speaker: an injector peer
//! sends N IPv4 /24s (packed like a real speaker would, ~ 800 per UPDATE),
//! the speaker decodes, selects, re-exports and encodes them for a
//! monitor peer; then the same for withdrawing them. Prints prefixes/s
//! and the RSS growth per route. No sockets: this measures bgpd's own
//! work, not the kernel's.
//!
//! Run: `cargo bench -p margay-bgpd --bench transit -- 1000000`

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgp_wire::Family;
use bgp_wire::{
    Capability, DecodeCxt, Message, NextHop, Nlri, OpenMsg, PathAttrs,
};
use bytes::BytesMut;
use ipnetwork::{IpNetwork, Ipv4Network};
use margay_bgpd::policy::{NextHopMode, Rule, RuleSet, SessionPolicy, Verdict};
use margay_bgpd::speaker::{Output, PeerCfg, Speaker, SpeakerCfg};
use margay_ctlproto::PeerType;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn peer(addr: [u8; 4], asn: u32) -> PeerCfg {
    let accept = RuleSet {
        v4: vec![Rule::all(Verdict::Accept)],
        v6: vec![],
    };
    PeerCfg {
        name: format!("Global_{}", Ipv4Addr::from(addr)),
        peer_type: PeerType::Global,
        addr: IpAddr::V4(addr.into()),
        port: 179,
        local_as: 65000,
        remote_as: asn,
        passive: true,
        hold_time: 0,
        keepalive: 0,
        connect_retry: Duration::from_secs(5),
        password: None,
        ttl_security: None,
        source_addr: None,
        restart_time: 120,
        max_prefixes: None,
        max_prefixes_restart: None,
        families: vec![Family::IPV4_UNICAST],
        policy: SessionPolicy {
            local_as: 65000,
            remote_as: asn,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: None,
            rr_client: false,
            import: accept.clone(),
            export: accept,
            allowed_local_as: 0,
            next_hop_mode: NextHopMode::Auto,
            local_addr: None,
            local_addr_other: None,
            ext_next_hop: false,
        },
    }
}

/// Bring a peer to Established over an in-memory connection.
fn establish(s: &mut Speaker, addr: [u8; 4], asn: u32) -> (u32, u64) {
    let (id, conn) = s
        .on_accept(
            IpAddr::V4(addr.into()),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .expect("configured peer");
    let open = OpenMsg::new(
        asn,
        0,
        Ipv4Addr::from(addr),
        vec![
            Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST),
            Capability::FourOctetAs(asn),
        ],
    );
    let cxt = DecodeCxt::default();
    s.on_frame(id, conn, &Message::Open(open).to_bytes(&cxt).unwrap());
    s.on_frame(id, conn, &Message::Keepalive.to_bytes(&cxt).unwrap());
    assert!(s.is_established(id));
    s.flush();
    s.take_outputs();
    (id, conn)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    s.set_peers(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    s.take_outputs();
    let (inj, conn) = establish(&mut s, [10, 0, 0, 2], 65001);
    let _mon = establish(&mut s, [10, 0, 0, 3], 65002);

    // Encode the injector's UPDATEs up front (not timed).
    let prefixes: Vec<Nlri> = (0..n)
        .map(|i| {
            let a = Ipv4Addr::from(0x0B00_0000u32 + ((i as u32) << 8));
            Nlri::new(IpNetwork::V4(Ipv4Network::new(a, 24).unwrap()))
        })
        .collect();
    let attrs = PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(bgp_wire::AsPath::from_sequence(&[65001])),
        ..Default::default()
    };
    let cxt = DecodeCxt::four_octet();
    let mut wire = BytesMut::new();
    bgp_wire::pack_reach(
        bgp_wire::Family::IPV4_UNICAST,
        &attrs,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 2)),
        &prefixes,
        &cxt,
        &mut wire,
    )
    .unwrap();
    let mut unwire = BytesMut::new();
    bgp_wire::pack_unreach(
        bgp_wire::Family::IPV4_UNICAST,
        &prefixes,
        &cxt,
        &mut unwire,
    )
    .unwrap();
    let frames = |b: &BytesMut| -> Vec<bytes::Bytes> {
        let mut b = b.clone();
        let mut v = Vec::new();
        while let Ok(Some(l)) = bgp_wire::frame_len(&b, false) {
            v.push(b.split_to(l).freeze());
        }
        v
    };
    let ups = frames(&wire);
    let downs = frames(&unwire);

    let rss0 = rss_kib();
    for (label, msgs) in [("announce", &ups), ("withdraw", &downs)] {
        let t = Instant::now();
        let mut out_bytes = 0usize;
        for chunk in msgs.chunks(64) {
            for f in chunk {
                s.on_frame(inj, conn, f);
            }
            s.flush();
            for o in s.take_outputs() {
                if let Output::Send { bytes, .. } = o {
                    out_bytes += bytes.len();
                }
            }
        }
        let dt = t.elapsed();
        println!(
            "{label}: {n} prefixes in {} UPDATEs, {:.3} s, {:.0} prefixes/s, {out_bytes} bytes to the monitor",
            msgs.len(),
            dt.as_secs_f64(),
            n as f64 / dt.as_secs_f64()
        );
        if label == "announce" {
            let grown = rss_kib().saturating_sub(rss0);
            println!(
                "RSS growth with {n} routes: {} KiB ({:.0} bytes/route; peak RSS {} MiB)",
                grown,
                grown as f64 * 1024.0 / n as f64,
                rss_kib() / 1024
            );
        }
    }
    assert_eq!(s.rib().len(), 0, "everything withdrawn");
}
