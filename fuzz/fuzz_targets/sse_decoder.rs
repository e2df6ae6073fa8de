//! The SSE decoder never panics, and any split of the input decodes to the same events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spillway_proto::SseDecoder;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    let bytes = &data[1..];
    let mut whole = SseDecoder::new();
    let a = whole.feed(bytes);
    let mut split = SseDecoder::new();
    let cut = cut.min(bytes.len());
    let mut b = split.feed(&bytes[..cut]);
    b.extend(split.feed(&bytes[cut..]));
    assert_eq!(a, b);
});
