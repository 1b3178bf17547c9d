#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast::fuzzing::feed_line(data));
