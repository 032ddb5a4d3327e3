//! The seven steps of a rotation, in order.

use std::fmt;

/// One step of a rotation. Each is verified before the next begins, and each can be repeated
/// after an interruption without doing twice what it did (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// 1: the current key gets a token, the certificates API answers, the plan is made.
    Preflight,
    /// 2: the new key pair and its certificate, made in the same token.
    NewKey,
    /// 3: the new certificate uploaded (mapped to the same role and entity).
    Upload,
    /// 4: an access token got with the new key, and the API called with it.
    Prove,
    /// 5: the profile switched to the new key and certificate id in the config file.
    Switch,
    /// 6: the old certificate revoked, and seen revoked in the list.
    Revoke,
    /// 7: the old key relabelled (or deleted with `--delete-old-key`).
    OldKey,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 7] = [
        Step::Preflight,
        Step::NewKey,
        Step::Upload,
        Step::Prove,
        Step::Switch,
        Step::Revoke,
        Step::OldKey,
    ];

    /// Its number, 1 to 7.
    pub fn number(self) -> u8 {
        match self {
            Step::Preflight => 1,
            Step::NewKey => 2,
            Step::Upload => 3,
            Step::Prove => 4,
            Step::Switch => 5,
            Step::Revoke => 6,
            Step::OldKey => 7,
        }
    }

    /// The step numbered `n`, if any.
    pub fn from_number(n: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.number() == n)
    }

    /// What it does, in a few words.
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::NewKey => "make the new key and certificate",
            Step::Upload => "upload the new certificate",
            Step::Prove => "prove the new key with a token",
            Step::Switch => "switch the profile to the new key",
            Step::Revoke => "revoke the old certificate",
            Step::OldKey => "retire the old key",
        }
    }

    /// The step after it, if any.
    pub fn next(self) -> Option<Step> {
        Step::from_number(self.number() + 1)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} of 7 ({})", self.number(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_one_to_seven_in_order() {
        let numbers: Vec<u8> = Step::ALL.iter().map(|s| s.number()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
        for step in Step::ALL {
            assert_eq!(Step::from_number(step.number()), Some(step));
        }
        assert_eq!(Step::Revoke.next(), Some(Step::OldKey));
        assert_eq!(Step::OldKey.next(), None);
        assert!(Step::Upload < Step::Switch);
        assert_eq!(
            Step::Upload.to_string(),
            "step 3 of 7 (upload the new certificate)"
        );
    }
}
