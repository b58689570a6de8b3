//! BFD Control packet decoding (margay-bfd's packet module): never
//! panics, and whatever it accepts re-encodes to the same octets (all but
//! the Length field, which the encoder always writes as 24).
#![no_main]
use libfuzzer_sys::fuzz_target;
use margay_bfd::packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = packet::ControlPacket::decode(data) {
        let out = p.to_bytes();
        assert_eq!(out.len(), packet::CONTROL_LEN);
        assert_eq!(out[..3], data[..3]);
        assert_eq!(out[4..], data[4..packet::CONTROL_LEN]);
        assert_eq!(packet::ControlPacket::decode(&out), Ok(p));
    }
});
