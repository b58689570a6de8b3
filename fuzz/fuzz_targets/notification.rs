//! NOTIFICATION decoding and the RFC 9003 shutdown message.
#![no_main]
use bgp_wire::NotificationMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = NotificationMsg::decode(data, 19) {
        let _ = (n.shutdown_message(), n.error_code(), n.to_string());
    }
});
