//! suitekey: NetSuite OAuth 2.0 machine-to-machine access with the private key kept inside a
//! PKCS#11 token (network HSM, YubiKey, TPM, SoftHSM2).
//!
//! Data flows one way, and each layer knows only the one below it:
//!
//! 1. [`cli`] parses the command line; [`config`] merges the profile from the config file, the
//!    flags and the `SUITEKEY_*` environment into one checked [`config::Profile`]: a key URI
//!    ([`pkcs11::Pkcs11Uri`]), the algorithm, and the claims (client id, certificate id,
//!    account, scopes, token URL). [`commands`] runs the command with it.
//! 2. [`pkcs11`] loads the module once per process, picks the token, logs in (PIN from a file,
//!    the environment or a prompt), finds the key and chooses the mechanism the module offers;
//!    it knows nothing of NetSuite or JWTs.
//! 3. [`jose`] carries the algorithm table and assembles the compact JWS; [`netsuite`] builds
//!    the assertion's header and claims and has it signed through the [`jose::Signer`] the
//!    token key implements, inside the token (`C_Sign`).
//! 4. The token exchange (`exchange`) POSTs the client assertion to NetSuite's token endpoint,
//!    retries what may be retried, explains what NetSuite refused, and returns the access
//!    token, which `token` prints and `exec` hands to a command in its environment.
//! 5. [`agent`] is the same flow kept running: one process per user holds a signing worker (and
//!    its logged-in session) per profile, caches each profile's access token and renews it
//!    ahead of expiry with one exchange at a time, and serves it over HTTP on a Unix socket to
//!    processes of allowed users; `token` and `exec` ask it instead of the token when
//!    `SUITEKEY_AUTH_SOCK` names its socket.
//!
//! Beside the flow: [`cert`] builds self-signed X.509 certificates with a token key and checks
//! them against NetSuite's rules (`keygen`, `cert`, `check`); [`rotation`] replaces a
//! profile's key and certificate through NetSuite's certificate API, resumably (`rotate`, and
//! the agent); [`private_dir`] keeps the directories of the agent's socket and the rotation
//! journal out of other users' reach; the emulator (`emulator`, run by `suitekey emulate`) is a
//! strict NetSuite token endpoint and certificate API for tests and the demo; [`error`]
//! gathers every layer's error and gives the exit code. The fuzzing entry points are behind
//! the `fuzzing` feature, for the targets in `fuzz/`.
#![deny(unsafe_code)]
// No panicking shortcuts outside tests: every failure is an error a user can act on.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod agent;
pub mod cert;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod emulator;
pub mod error;
pub(crate) mod exchange;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod jose;
pub mod kind;
pub mod netsuite;
pub mod pkcs11;
pub mod private_dir;
pub mod report;
pub mod rotation;

pub use error::Error;
