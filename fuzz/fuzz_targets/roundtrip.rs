//! Serializer round trip: whatever decodes must encode, and the encoding
//! must decode to the same message.
#![no_main]
use bgp_wire::{DecodeCxt, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let cxt = DecodeCxt { four_octet_as: sel & 1 != 0, ..DecodeCxt::default() };
    let Ok(mut m) = Message::decode(rest, &cxt) else { return };
    if let Message::Update(u) = &mut m {
        if !u.errors.is_empty() {
            return; // malformed input is not expected to survive as-is
        }
    }
    let Ok(b) = m.to_bytes(&cxt) else { return };
    let again = Message::decode(&b, &cxt).expect("our encoding decodes");
    assert_eq!(again, m);
});
