//! `--fail-certificates CALL:FAULT[:N]`: make one call of the certificate API fail, so a
//! client's handling of each step can be tested.

use std::str::FromStr;

use super::calls::Call;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `500`: HTTP 500 with NetSuite's `UNEXPECTED_ERROR`, before the call does anything.
    ServerError,
    /// `500-after`: the call takes effect (an upload is stored, a revocation made), then the
    /// answer is a 500, as when an answer is lost on the way back.
    ServerErrorAfter,
    /// `hang`: no answer, until the emulator stops (or for [`HANG_SECS`]), before the call
    /// does anything: past any client's timeout.
    Hang,
}

/// The longest a hanging call waits before it answers 500, when the emulator keeps running.
pub const HANG_SECS: u64 = 600;

/// A fault for one call: its first `first` requests (every request when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallFault {
    /// The call that fails.
    pub call: Call,
    /// How.
    pub fault: Fault,
    /// How many of its requests (the first ones); all of them when `None`.
    pub first: Option<u64>,
}

impl CallFault {
    /// The fault for request number `n` (from 1) of `call`, among `faults`.
    pub fn for_request(faults: &[CallFault], call: Call, n: u64) -> Option<Fault> {
        faults
            .iter()
            .find(|f| f.call == call && f.first.is_none_or(|first| n <= first))
            .map(|f| f.fault)
    }
}

impl FromStr for CallFault {
    type Err = String;

    /// `CALL:FAULT[:N]`: CALL one of list, upload, revoke; FAULT one of 500, 500-after, hang;
    /// N a count of at least 1.
    fn from_str(spec: &str) -> Result<CallFault, String> {
        let mut parts = spec.split(':');
        let (call, fault, first) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() || fault.is_none() {
            return Err(
                "give CALL:FAULT or CALL:FAULT:N, such as upload:500 or revoke:hang:1".into(),
            );
        }
        let call = Call::ALL
            .into_iter()
            .find(|c| Some(c.as_str()) == call)
            .ok_or_else(|| {
                format!(
                    "unknown call {:?}; the calls are list, upload and revoke",
                    call.unwrap_or_default()
                )
            })?;
        let fault = match fault {
            Some("500") => Fault::ServerError,
            Some("500-after") => Fault::ServerErrorAfter,
            Some("hang") => Fault::Hang,
            other => {
                return Err(format!(
                    "unknown fault {:?}; the faults are 500, 500-after and hang",
                    other.unwrap_or_default()
                ));
            }
        };
        let first = first
            .map(|n| match n.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "the count {n:?} is not a whole number of at least 1"
                )),
            })
            .transpose()?;
        Ok(CallFault { call, fault, first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_spec_names_the_call_the_fault_and_optionally_a_count() {
        let parsed: CallFault = "upload:500".parse().unwrap();
        assert_eq!(
            parsed,
            CallFault {
                call: Call::Upload,
                fault: Fault::ServerError,
                first: None
            }
        );
        let parsed: CallFault = "revoke:hang:2".parse().unwrap();
        assert_eq!((parsed.fault, parsed.first), (Fault::Hang, Some(2)));
        let parsed: CallFault = "list:500-after".parse().unwrap();
        assert_eq!(parsed.fault, Fault::ServerErrorAfter);
        for (bad, says) in [
            ("upload", "give CALL:FAULT"),
            ("upload:500:1:2", "give CALL:FAULT"),
            ("delete:500", "unknown call \"delete\""),
            ("upload:404", "unknown fault \"404\""),
            ("upload:500:0", "the count \"0\""),
            ("upload:500:-1", "the count \"-1\""),
            ("upload:500:", "the count \"\""),
        ] {
            let err = bad.parse::<CallFault>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_counted_fault_applies_to_the_first_requests_only() {
        let faults: Vec<CallFault> = ["upload:500:2", "revoke:hang"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let upload = |n| CallFault::for_request(&faults, Call::Upload, n);
        assert_eq!(
            (upload(1), upload(2), upload(3)),
            (Some(Fault::ServerError), Some(Fault::ServerError), None)
        );
        assert_eq!(
            CallFault::for_request(&faults, Call::Revoke, 99),
            Some(Fault::Hang)
        );
        assert_eq!(CallFault::for_request(&faults, Call::List, 1), None);
    }
}
