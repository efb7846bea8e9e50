#![no_main]
//! libFuzzer target: [`ptq4_fuzz::harness::image`] on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ptq4_fuzz::harness::image(data);
});
