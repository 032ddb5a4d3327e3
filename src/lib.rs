//! suitekey: NetSuite OAuth 2.0 machine-to-machine access with the private key kept inside a
//! PKCS#11 token (network HSM, YubiKey, TPM, SoftHSM2).
//!
//! Data flows one way: the CLI resolves a key URI and claims, [`pkcs11`] signs inside the token,
//! [`jose`] and [`netsuite`] wrap the signature into the client assertion NetSuite expects.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod cert;
pub mod cli;
pub mod commands;
pub mod config;
pub mod emulator;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod jose;
pub mod kind;
pub mod netsuite;
pub mod pkcs11;
pub mod report;

pub use error::Error;
