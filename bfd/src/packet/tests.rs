//! Golden vectors, one captured from BIRD 2.0.12 and the others laid out
//! by hand from the RFC 5880 section 4.1 diagram, checked in both
//! directions; then every discard rule of section 6.8.6 that the codec
//! owns.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn base() -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 5,
        my_discr: 1,
        your_discr: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 10_000,
        required_min_echo_rx_us: 0,
    }
}

/// (bytes, packet) pairs.
fn vectors() -> Vec<(Vec<u8>, ControlPacket)> {
    vec![
        // Vers 1 / Diag 0, Sta Down, Mult 5, Len 24; the first packet of
        // a session: Your Discriminator still zero, 1 s slow start.
        (
            hex("20 40 05 18  00000001 00000000 000f4240 00002710 00000000"),
            base(),
        ),
        // BIRD 2.0.12's first packet (tcpdump of `protocol bfd` with
        // `min rx interval 100 ms; multiplier 3` and a BGP `bfd on`):
        // Down, idle 1 s transmit, 100 ms required receive.
        (
            hex("20 40 03 18  720a9239 00000000 000f4240 000186a0 00000000"),
            ControlPacket {
                detect_mult: 3,
                my_discr: 0x720a_9239,
                required_min_rx_us: 100_000,
                ..base()
            },
        ),
        // Diag 1 (Control Detection Time Expired), Sta Up, P; 300 ms.
        (
            hex("21 e0 03 18  12345678 9abcdef0 000493e0 000493e0 00000000"),
            ControlPacket {
                diag: Diag::ControlDetectionExpired,
                state: State::Up,
                poll: true,
                detect_mult: 3,
                my_discr: 0x1234_5678,
                your_discr: 0x9abc_def0,
                desired_min_tx_us: 300_000,
                required_min_rx_us: 300_000,
                ..base()
            },
        ),
        // Diag 3 (Neighbor Signaled Session Down), Sta Init, F, C, D;
        // echo interval 50 ms.
        (
            hex("23 9a ff 18  ffffffff 00000002 00000001 00000000 0000c350"),
            ControlPacket {
                diag: Diag::NeighborDown,
                state: State::Init,
                final_: true,
                control_plane_independent: true,
                demand: true,
                detect_mult: 255,
                my_discr: u32::MAX,
                your_discr: 2,
                desired_min_tx_us: 1,
                required_min_rx_us: 0,
                required_min_echo_rx_us: 50_000,
                ..base()
            },
        ),
        // Diag 7 (Administratively Down), Sta AdminDown.
        (
            hex("27 00 01 18  00000009 00000000 000f4240 000f4240 00000000"),
            ControlPacket {
                diag: Diag::AdminDown,
                state: State::AdminDown,
                detect_mult: 1,
                my_discr: 9,
                required_min_rx_us: 1_000_000,
                ..base()
            },
        ),
    ]
}

#[test]
fn golden_vectors_decode_and_encode() {
    for (bytes, pkt) in vectors() {
        assert_eq!(ControlPacket::decode(&bytes), Ok(pkt), "{bytes:02x?}");
        assert_eq!(pkt.to_bytes().as_ref(), bytes.as_slice(), "{pkt:?}");
    }
}

#[test]
fn reserved_diagnostic_survives_a_round_trip() {
    let mut b = vectors()[0].0.clone();
    b[0] = 0x20 | 30;
    let p = ControlPacket::decode(&b).unwrap();
    assert_eq!(p.diag, Diag::Reserved(30));
    assert_eq!(p.to_bytes().as_ref(), b.as_slice());
}

#[test]
fn trailing_octets_beyond_length_are_ignored() {
    let mut b = vectors()[0].0.clone();
    b.extend_from_slice(&[0xde, 0xad]);
    assert_eq!(ControlPacket::decode(&b), Ok(base()));
}

#[test]
fn discard_rules_of_section_6_8_6() {
    let good = vectors()[0].0.clone();
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        ControlPacket::decode(&b)
    };
    assert_eq!(
        ControlPacket::decode(&good[..23]),
        Err(DecodeError::Short(23))
    );
    assert_eq!(with(0, 0x40), Err(DecodeError::Version(2)));
    assert_eq!(with(0, 0x00), Err(DecodeError::Version(0)));
    assert_eq!(with(3, 23), Err(DecodeError::LengthTooSmall(23)));
    assert_eq!(
        with(3, 26),
        Err(DecodeError::Length {
            len: 26,
            available: 24
        })
    );
    assert_eq!(with(1, 0x44), Err(DecodeError::Authentication));
    assert_eq!(with(2, 0), Err(DecodeError::ZeroDetectMult));
    assert_eq!(with(1, 0x41), Err(DecodeError::Multipoint));
    assert_eq!(with(7, 0), Err(DecodeError::ZeroMyDiscr));
    // Up or Init with a zero Your Discriminator.
    assert_eq!(with(1, 0xc0), Err(DecodeError::ZeroYourDiscr(State::Up)));
    assert_eq!(with(1, 0x80), Err(DecodeError::ZeroYourDiscr(State::Init)));
    // AdminDown with a zero Your Discriminator is fine.
    assert!(with(1, 0x00).is_ok());
    assert_eq!(with(1, 0x70), Err(DecodeError::PollAndFinal));
}
