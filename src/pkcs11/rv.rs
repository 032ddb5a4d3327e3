//! PKCS#11 return values, kept typed: how a failed call is named in messages (`CKR_…`, as in the
//! standard and in module documentation) and what it says about the session and the token.
//! Nothing compares their names as text.

use std::fmt;

use cryptoki::error::{Error as CkError, RvError};

/// What a failed PKCS#11 call came back with: the module's return value, or a failure around
/// the call that no module answered (a library that could not be opened, a length that does
/// not fit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnValue {
    /// The module's return value, e.g. `CKR_DEVICE_ERROR`.
    Pkcs11(RvError),
    /// No return value: what went wrong instead, in words.
    Other(String),
}

impl ReturnValue {
    /// What `err` says: its return value, or its text when it has none.
    pub(crate) fn of(err: &CkError) -> ReturnValue {
        match rv_of(err) {
            Some(rv) => ReturnValue::Pkcs11(rv),
            None => ReturnValue::Other(err.to_string()),
        }
    }

    /// After these a new session and one new login may succeed: the token closed the session,
    /// logged everyone out, or was removed and put back. SoftHSM2 reports a logged-out token's
    /// private key as `CKR_OBJECT_HANDLE_INVALID`, and a re-inserted token may give the key a
    /// new handle, so those two count as well: the key is found again.
    pub fn loses_session(&self) -> bool {
        matches!(
            self,
            ReturnValue::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::SlotIdInvalid
                    | RvError::CryptokiNotInitialized
                    | RvError::ObjectHandleInvalid
                    | RvError::KeyHandleInvalid
            )
        )
    }

    /// These say the token itself is gone or broken, not just the session: looking for it
    /// again, by its URI, may need a reinitialized module. SoftHSM2 answers
    /// `CKR_GENERAL_ERROR` for a token whose directory was removed.
    pub fn loses_token(&self) -> bool {
        matches!(
            self,
            ReturnValue::Pkcs11(
                RvError::GeneralError
                    | RvError::DeviceError
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent
                    | RvError::TokenNotRecognized
                    | RvError::SlotIdInvalid
                    | RvError::CryptokiNotInitialized
            )
        )
    }

    /// A token answering these may answer normally on the next try: SoftHSM2 answers
    /// `CKR_GENERAL_ERROR` while another process rewrites its token file, and modules report a
    /// shortage of memory or file descriptors in these terms.
    pub fn may_pass(&self) -> bool {
        matches!(
            self,
            ReturnValue::Pkcs11(
                RvError::GeneralError
                    | RvError::DeviceError
                    | RvError::DeviceMemory
                    | RvError::HostMemory
                    | RvError::FunctionFailed
            )
        )
    }
}

impl From<RvError> for ReturnValue {
    fn from(rv: RvError) -> ReturnValue {
        ReturnValue::Pkcs11(rv)
    }
}

impl fmt::Display for ReturnValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReturnValue::Pkcs11(rv) => f.write_str(&rv_name(*rv)),
            ReturnValue::Other(text) => f.write_str(text),
        }
    }
}

/// Formats a cryptoki error as `CKR_…` where it is a PKCS#11 return value.
pub(crate) fn describe(err: &CkError) -> String {
    ReturnValue::of(err).to_string()
}

/// `PinIncorrect` → `CKR_PIN_INCORRECT`: the spelling users find in module documentation.
pub(crate) fn rv_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase()
            || c.is_ascii_digit() && !out.ends_with(|p: char| p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The PKCS#11 return value of a cryptoki error, if it is one.
pub(crate) fn rv_of(err: &CkError) -> Option<RvError> {
    match err {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_values_are_spelled_as_in_the_standard() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::UserAlreadyLoggedIn),
            "CKR_USER_ALREADY_LOGGED_IN"
        );
        assert_eq!(rv_name(RvError::KeyHandleInvalid), "CKR_KEY_HANDLE_INVALID");
    }
}
