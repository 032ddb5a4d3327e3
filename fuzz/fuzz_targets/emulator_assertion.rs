//! Arbitrary bytes into the emulator's token-request rules, as the form body and as the bare
//! client assertion, against one registered P-256 key: see `suitekey::fuzzing::emulator_assertion`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = suitekey::fuzzing::emulator_assertion(data);
});
