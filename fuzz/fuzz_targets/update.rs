//! UPDATE body and path attribute decoding (RFC 7606 paths).
#![no_main]
use bgp_wire::{DecodeCxt, UpdateMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let cxt = DecodeCxt { four_octet_as: sel & 1 != 0, ..DecodeCxt::default() };
    if let Ok(u) = UpdateMsg::decode(rest, &cxt) {
        let _ = (u.verdict(), u.withdrawn_all().count(), u.end_of_rib_family());
    }
});
