//! Arbitrary bytes into the pkcs11 uri parser: see `suitekey::fuzzing::pkcs11_uri`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suitekey::fuzzing::pkcs11_uri(data));
