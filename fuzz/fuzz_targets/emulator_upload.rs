//! Arbitrary bytes as the JSON body of a certificate upload to the emulator: see
//! `suitekey::fuzzing::emulator_upload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    suitekey::fuzzing::emulator_upload(data);
});
