//! OPEN body and capability decoding.
#![no_main]
use bgp_wire::OpenMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = OpenMsg::decode(data) {
        let _ = (o.asn(), o.families(), o.graceful_restart());
    }
});
