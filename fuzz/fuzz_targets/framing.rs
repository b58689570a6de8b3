//! Stream framing: frame_len over arbitrary byte streams.
#![no_main]
use bgp_wire::frame_len;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some(n)) = frame_len(buf, buf.first() == Some(&0xff)) {
        assert!(n >= 19 && n <= buf.len());
        buf = &buf[n..];
    }
});
