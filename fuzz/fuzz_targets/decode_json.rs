#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kad_core::fuzzing::decode_json(data));
