//! The recorded scenarios: each sets a speaker up in code (configuration
//! is not an [`Input`]) and drives it the way the IO layer would,
//! finding connection numbers and discriminators in the outputs.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bgp_wire::{
    Capability, DecodeCxt, Family, GrFamily, GracefulRestartCap, Message,
    NextHop, Nlri, OpenMsg, PathAttrs, UpdateMsg,
};
use bytes::BytesMut;
use margay_bgpd::bfd::session::Timer as BfdTimer;
use margay_bgpd::bfd::{ControlPacket, Diag, SessionCfg, State as BfdState};
use margay_bgpd::policy::{NextHopMode, Rule, RuleSet, SessionPolicy, Verdict};
use margay_bgpd::replay::Input;
use margay_bgpd::speaker::{
    Output, PeerCfg, Speaker, SpeakerCfg, TimerKey, TimerKind,
};
use margay_ctlproto::PeerType;

use super::Rec;

pub struct Scenario {
    /// The log's file name (without `.json`).
    pub name: &'static str,
    /// The configured speaker.
    pub setup: fn() -> Speaker,
    /// The inputs, given the outputs of the setup.
    pub drive: fn(&mut Rec, &[Output]),
}

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "open_collision",
        setup: || speaker(vec![peer([10, 0, 0, 2], 65001, false)]),
        drive: open_collision,
    },
    Scenario {
        name: "gr_end_of_rib",
        setup: || {
            speaker(vec![
                peer([10, 0, 0, 2], 65001, true),
                peer([10, 0, 0, 3], 65002, true),
            ])
        },
        drive: gr_end_of_rib,
    },
    Scenario {
        name: "bfd_down",
        setup: bfd_setup,
        drive: bfd_down,
    },
    Scenario {
        name: "max_prefix_hold",
        setup: || {
            let mut p = peer([10, 0, 0, 2], 65001, true);
            p.max_prefixes = Some(1);
            p.max_prefixes_restart = Some(Duration::from_secs(30));
            speaker(vec![p])
        },
        drive: max_prefix_hold,
    },
];

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

/// The scenarios' clock starts here and moves by [`Input::Tick`]s.
fn at(secs: u64) -> Input {
    Input::Tick(at_time(secs))
}

fn at_time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs)
}

fn peer(addr: [u8; 4], asn: u32, passive: bool) -> PeerCfg {
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
        passive,
        hold_time: 90,
        keepalive: 30,
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

fn speaker(peers: Vec<PeerCfg>) -> Speaker {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    s.tick(at_time(0));
    s.set_peers(peers);
    s
}

fn open(addr: [u8; 4], asn: u32, gr: bool) -> Vec<u8> {
    let mut caps = vec![
        Capability::MultiProtocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(asn),
    ];
    if gr {
        caps.push(Capability::GracefulRestart(GracefulRestartCap {
            restart_state: false,
            notification: false,
            restart_time: 60,
            families: vec![GrFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: true,
            }],
        }));
    }
    let open = OpenMsg::new(asn, 90, Ipv4Addr::from(addr), caps);
    Message::Open(open)
        .to_bytes(&DecodeCxt::default())
        .unwrap()
        .to_vec()
}

fn keepalive() -> Vec<u8> {
    Message::Keepalive
        .to_bytes(&DecodeCxt::default())
        .unwrap()
        .to_vec()
}

fn announce(prefix: &str, from: [u8; 4], asn: u32) -> Vec<u8> {
    let attrs = PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(bgp_wire::AsPath::from_sequence(&[asn])),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    bgp_wire::pack_reach(
        Family::IPV4_UNICAST,
        &attrs,
        NextHop::V4(Ipv4Addr::from(from)),
        &[Nlri::new(prefix.parse().unwrap())],
        &DecodeCxt::four_octet(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

fn end_of_rib() -> Vec<u8> {
    Message::Update(UpdateMsg::end_of_rib(Family::IPV4_UNICAST))
        .to_bytes(&DecodeCxt::four_octet())
        .unwrap()
        .to_vec()
}

/// The (peer, connection) the speaker sent its OPEN on after `outs`'s
/// input: how the IO layer learns an accepted connection's number.
fn sent_on(outs: &[Output]) -> (u32, u64) {
    outs.iter()
        .find_map(|o| match o {
            Output::Send { peer, conn, .. } => Some((*peer, *conn)),
            _ => None,
        })
        .expect("an OPEN sent")
}

/// Accept a connection from `addr` and bring its session up.
fn establish(rec: &mut Rec, addr: [u8; 4], asn: u32, gr: bool) -> (u32, u64) {
    let outs = rec.feed(Input::Accept {
        remote: IpAddr::V4(addr.into()),
        local: LOCAL,
    });
    let (peer, conn) = sent_on(&outs);
    rec.feed(Input::Frame {
        peer,
        conn,
        frame: open(addr, asn, gr),
    });
    rec.feed(Input::Frame {
        peer,
        conn,
        frame: keepalive(),
    });
    assert!(rec.speaker().is_established(peer));
    (peer, conn)
}

/// RFC 4271 6.8: we connect to the peer while it connects to us; both
/// connections see an OPEN, and the one the higher BGP Identifier (the
/// peer's, 10.0.0.2) initiated stays: ours is closed with Cease /
/// Connection Collision Resolution.
fn open_collision(rec: &mut Rec, setup: &[Output]) {
    rec.feed(at(1));
    let (peer, ours) = setup
        .iter()
        .find_map(|o| match o {
            Output::Connect { peer, conn, .. } => Some((*peer, *conn)),
            _ => None,
        })
        .expect("an active peer connects at once");
    rec.feed(Input::Connected {
        peer,
        conn: ours,
        result: Ok(LOCAL),
    });
    let outs = rec.feed(Input::Accept {
        remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        local: LOCAL,
    });
    let (_, theirs) = sent_on(&outs);
    assert_ne!(ours, theirs);
    rec.feed(at(2));
    for conn in [ours, theirs] {
        rec.feed(Input::Frame {
            peer,
            conn,
            frame: open([10, 0, 0, 2], 65001, false),
        });
    }
    rec.feed(Input::Frame {
        peer,
        conn: theirs,
        frame: keepalive(),
    });
    assert!(rec.speaker().is_established(peer));
    rec.feed(Input::Closed {
        peer,
        conn: ours,
        why: "closed by peer".into(),
    });
    rec.feed(Input::Flush);
}

/// RFC 4724 helper: a GR peer's route is advertised on, kept stale when
/// its connection dies, and withdrawn after it comes back with an
/// End-of-RIB that does not carry it.
fn gr_end_of_rib(rec: &mut Rec, _: &[Output]) {
    rec.feed(at(1));
    let inj = establish(rec, [10, 0, 0, 2], 65001, true);
    establish(rec, [10, 0, 0, 3], 65002, false);
    rec.feed(Input::Flush);
    rec.feed(Input::Frame {
        peer: inj.0,
        conn: inj.1,
        frame: announce("192.0.2.0/24", [10, 0, 0, 2], 65001),
    });
    rec.feed(Input::Flush);
    rec.feed(at(10));
    rec.feed(Input::Closed {
        peer: inj.0,
        conn: inj.1,
        why: "reset".into(),
    });
    rec.feed(Input::Flush);
    assert!(rec.speaker().rib_dump()[0].paths[0].stale);
    rec.feed(at(20));
    let inj = establish(rec, [10, 0, 0, 2], 65001, true);
    rec.feed(Input::Frame {
        peer: inj.0,
        conn: inj.1,
        frame: end_of_rib(),
    });
    rec.feed(Input::Flush);
    assert!(rec.speaker().rib_dump().is_empty());
}

const BFD_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fn bfd_setup() -> Speaker {
    let mut s = speaker(vec![peer([10, 0, 0, 2], 65001, true)]);
    s.seed_bfd(0x5eed_0000);
    s.set_bfd(
        [(
            "Global_10.0.0.2".to_string(),
            SessionCfg {
                min_interval: Duration::from_millis(100),
                multiplier: 3,
            },
        )]
        .into(),
    );
    s
}

fn bfd_from_peer(state: BfdState, your: u32) -> Vec<u8> {
    ControlPacket {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 77,
        your_discr: your,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
    .to_bytes()
    .to_vec()
}

/// RFC 5882: BFD comes Up next to an Established session; its Detection
/// Time passes without a packet, and the BGP session goes with Cease /
/// BFD Down (RFC 9384) and its route at once.
fn bfd_down(rec: &mut Rec, setup: &[Output]) {
    let discr = setup
        .iter()
        .find_map(|o| match o {
            Output::BfdOpen { discr, .. } => Some(*discr),
            _ => None,
        })
        .expect("BFD socket opened");
    rec.feed(at(1));
    let c = establish(rec, [10, 0, 0, 2], 65001, false);
    rec.feed(Input::Frame {
        peer: c.0,
        conn: c.1,
        frame: announce("192.0.2.0/24", [10, 0, 0, 2], 65001),
    });
    for (state, your) in [(BfdState::Down, 0), (BfdState::Up, discr)] {
        rec.feed(Input::BfdPacket {
            src: BFD_PEER,
            ttl: 255,
            payload: bfd_from_peer(state, your),
        });
    }
    rec.feed(Input::Flush);
    rec.feed(at(2));
    rec.feed(Input::Timer(TimerKey {
        peer: 0,
        kind: TimerKind::Bfd(discr, BfdTimer::Detect),
    }));
    rec.feed(Input::Flush);
    assert!(!rec.speaker().is_established(c.0));
    assert!(rec.speaker().rib_dump().is_empty());
}

/// RFC 4486 max prefixes: the second prefix against a limit of one ends
/// the session with Cease / Maximum Number of Prefixes Reached; the peer
/// is held Idle (its reconnection refused) until the restart interval.
fn max_prefix_hold(rec: &mut Rec, _: &[Output]) {
    rec.feed(at(1));
    let c = establish(rec, [10, 0, 0, 2], 65001, false);
    for prefix in ["192.0.2.0/24", "198.51.100.0/24"] {
        rec.feed(Input::Frame {
            peer: c.0,
            conn: c.1,
            frame: announce(prefix, [10, 0, 0, 2], 65001),
        });
    }
    rec.feed(Input::Flush);
    assert!(!rec.speaker().is_established(c.0));
    let refused = rec.feed(Input::Accept {
        remote: BFD_PEER,
        local: LOCAL,
    });
    assert!(!refused.iter().any(|o| matches!(o, Output::Send { .. })));
    rec.feed(at(31));
    rec.feed(Input::Timer(TimerKey {
        peer: c.0,
        kind: TimerKind::HeldRestart,
    }));
    establish(rec, [10, 0, 0, 2], 65001, false);
}
