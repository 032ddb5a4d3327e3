//! The PKCS#11 errors: which failures are retried, and which never are.

use super::*;
use cryptoki::error::RvError;

#[test]
fn lost_sessions_are_told_apart_from_refusals() {
    let call = |rv: RvError| Error::Call {
        call: "C_Sign".into(),
        module: "m.so".into(),
        rv: rv.into(),
    };
    assert!(call(RvError::SessionHandleInvalid).is_session_lost());
    assert!(call(RvError::UserNotLoggedIn).is_session_lost());
    assert!(call(RvError::DeviceRemoved).is_session_lost());
    assert!(call(RvError::ObjectHandleInvalid).is_session_lost());
    assert!(!call(RvError::MechanismInvalid).is_session_lost());
    assert!(!call(RvError::DeviceError).is_session_lost());
    let pin = Error::PinIncorrect {
        token: "t".into(),
        origin: "file".into(),
        tries: String::new(),
    };
    assert!(!pin.is_session_lost());
    assert!(!pin.is_key_lost());
    let void = Error::SessionVoid {
        module: "m.so".into(),
    };
    assert!(void.is_session_lost() && !void.is_token_lost());
    let gone = Error::TokenNotFound {
        selector: "token=t".into(),
        module: "m.so".into(),
        available: String::new(),
        unsure: false,
    };
    assert!(gone.is_token_lost() && gone.is_key_lost() && !gone.is_session_lost());
    assert!(call(RvError::GeneralError).is_token_lost());
    assert!(call(RvError::DeviceError).is_token_lost());
    assert!(!call(RvError::GeneralError).is_session_lost());
    assert!(!call(RvError::MechanismInvalid).is_key_lost());
}

#[test]
fn only_failures_that_may_pass_are_retried_and_never_a_pin_refusal() {
    let call = |rv: RvError| Error::Call {
        call: "C_Login".into(),
        module: "m.so".into(),
        rv: rv.into(),
    };
    for rv in [
        RvError::GeneralError,
        RvError::DeviceError,
        RvError::HostMemory,
        RvError::FunctionFailed,
        RvError::TokenNotPresent,
        RvError::SessionHandleInvalid,
    ] {
        assert!(call(rv).is_transient(), "{rv:?}");
    }
    assert!(call(RvError::GeneralError).may_pass());
    assert!(!call(RvError::TokenNotPresent).may_pass());
    for rv in [RvError::MechanismInvalid, RvError::KeyTypeInconsistent] {
        assert!(!call(rv).is_transient(), "{rv:?}");
    }
    let not_found = |unsure| Error::TokenNotFound {
        selector: "token=t".into(),
        module: "m.so".into(),
        available: String::new(),
        unsure,
    };
    assert!(not_found(false).is_transient() && !not_found(false).may_pass());
    assert!(not_found(true).may_pass());
    let refused = [
        Error::PinIncorrect {
            token: "t".into(),
            origin: "file".into(),
            tries: String::new(),
        },
        Error::PinLocked {
            token: "t".into(),
            remedy: "",
        },
        Error::PinFinalTry {
            token: "t".into(),
            remedy: "",
        },
        Error::KeyNotFound {
            key: "k".into(),
            token: "t".into(),
            present: String::new(),
            module: "m.so".into(),
        },
    ];
    for e in refused {
        assert!(!e.is_transient(), "{e}");
    }
}
