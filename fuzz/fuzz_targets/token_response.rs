//! Arbitrary bytes into the token response parser: see `suitekey::fuzzing::token_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suitekey::fuzzing::token_response(data));
