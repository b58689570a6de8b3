//! NLRI prefix decoding for both address families, with and without ADD-PATH.
#![no_main]
use bgp_wire::Afi;
use bgp_wire::nlri::decode_prefixes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let afi = if sel & 1 != 0 { Afi::Ipv6 } else { Afi::Ipv4 };
    let mut out = Vec::new();
    let _ = decode_prefixes(rest, afi, sel & 2 != 0, 0, &mut out);
});
