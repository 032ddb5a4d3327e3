//! The three calls of the certificate API, and how many of each arrived.

use std::fmt;

use serde::Serialize;

/// One of the certificate API's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET …/certificates`.
    List,
    /// `POST …/certificates`.
    Upload,
    /// `POST …/certificates/<id>/revoke`.
    Revoke,
}

impl Call {
    /// Every call, in the order the docs name them.
    pub const ALL: [Call; 3] = [Call::List, Call::Upload, Call::Revoke];

    /// Its name in flags and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::List => "list",
            Call::Upload => "upload",
            Call::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Requests received per call (faulted and refused ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Calls {
    /// List calls.
    pub list: u64,
    /// Upload calls.
    pub upload: u64,
    /// Revoke calls.
    pub revoke: u64,
}

impl Calls {
    /// Counts one more `call`; returns its number, from 1.
    pub fn count(&mut self, call: Call) -> u64 {
        let n = match call {
            Call::List => &mut self.list,
            Call::Upload => &mut self.upload,
            Call::Revoke => &mut self.revoke,
        };
        *n += 1;
        *n
    }
}
