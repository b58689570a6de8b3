//! Whole-message decode under every context the first byte selects.
#![no_main]
use bgp_wire::{DecodeCxt, FamilySet, Family, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let all = FamilySet::of(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    let cxt = DecodeCxt {
        four_octet_as: sel & 1 != 0,
        add_path: if sel & 2 != 0 { all } else { FamilySet::EMPTY },
        extended_nh: if sel & 4 != 0 { all } else { FamilySet::EMPTY },
        extended_msg: sel & 8 != 0,
    };
    if let Err(e) = Message::decode(rest, &cxt) {
        let _ = e.to_notification();
    }
});
