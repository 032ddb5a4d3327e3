//! Arbitrary bytes into the config parser: see `suitekey::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suitekey::fuzzing::config(data));
