//! Step 1's decisions, kept in the journal: the key replaced and its certificate, the new key
//! (label, `CKA_ID`, kind, algorithm, URI), the new certificate's subject and validity, and the
//! role and entity it is mapped to. Also the rules those decisions follow: the new key's kind
//! (the current key's family unless `--alg`), its label (never one that is taken), and the
//! label a retired key gets.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::error::StepError;
use crate::jose::{Alg, KeyKind, Scheme};
use crate::netsuite::{self, CertificateId, InternalId};
use crate::pkcs11::uri::KeyRef;
use crate::pkcs11::{KeySpec, Pkcs11Uri, hex};

/// What a rotation does, decided in step 1 and kept in the journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The key the profile used, its URI as the config file had it.
    #[serde(with = "as_text")]
    pub old_key: Pkcs11Uri,
    /// Its `CKA_ID`, hex (empty for a key without one).
    pub old_key_id: String,
    /// Its `CKA_LABEL`, if it is text.
    pub old_label: Option<String>,
    /// The algorithm the old key signed with, when the profile named one.
    #[serde(default, with = "opt_text")]
    pub old_alg: Option<Alg>,
    /// The certificate id the profile used.
    #[serde(with = "as_text")]
    pub old_certificate_id: CertificateId,
    /// The new key: the old URI with the new `object=` and `id=`.
    #[serde(with = "as_text")]
    pub new_key: Pkcs11Uri,
    /// The new key's label.
    pub new_label: String,
    /// The new key's `CKA_ID`, hex.
    pub new_key_id: String,
    /// The algorithm the new key signs with.
    #[serde(with = "as_text")]
    pub alg: Alg,
    /// The new RSA key's size, for a PS* algorithm.
    #[serde(default)]
    pub rsa_bits: Option<u32>,
    /// The new certificate's validity in days.
    pub days: u32,
    /// The new certificate's subject (RFC 4514).
    pub subject: String,
    /// The role the new certificate is mapped to.
    #[serde(with = "as_text")]
    pub role: InternalId,
    /// The entity the new certificate is mapped to.
    #[serde(with = "as_text")]
    pub entity: InternalId,
    /// The new certificate's id, known once step 2 made it.
    #[serde(default, with = "opt_text")]
    pub new_certificate_id: Option<CertificateId>,
    /// Step 7 deletes the old key instead of relabelling it.
    #[serde(default)]
    pub delete_old_key: bool,
}

impl Plan {
    /// The new key's kind.
    pub fn spec(&self) -> KeySpec {
        match self.alg.scheme() {
            Scheme::Ecdsa(curve) => KeySpec::Ec(curve),
            Scheme::Pss => KeySpec::Rsa {
                bits: self.rsa_bits.unwrap_or(KeySpec::DEFAULT_RSA_BITS),
            },
        }
    }

    /// The old key, as a key reference (checked: it names one private key, no PIN).
    pub fn old_key_ref(&self) -> Result<KeyRef, StepError> {
        key_ref(&self.old_key)
    }

    /// The new key, as a key reference.
    pub fn new_key_ref(&self) -> Result<KeyRef, StepError> {
        key_ref(&self.new_key)
    }

    /// The references that find the old key in step 7, in order: by its `CKA_ID` and the
    /// label it had, then by its id and `retired` (the label an interrupted step 7 gave it).
    /// A key without an id is found by its labels alone; a key without a label by its id alone;
    /// a key with neither cannot be told apart, and is not looked for.
    pub fn old_key_refs(&self, retired: &str) -> Result<Vec<KeyRef>, StepError> {
        let id = id_bytes(&self.old_key_id).filter(|id| !id.is_empty());
        let labels = match (&id, &self.old_label) {
            (None, None) => Vec::new(),
            (Some(_), None) => vec![None],
            (_, Some(old)) => vec![Some(old.clone()), Some(retired.to_owned())],
        };
        labels
            .into_iter()
            .map(|label| {
                let mut uri = self.old_key.clone();
                uri.object = label;
                if id.is_some() {
                    uri.id.clone_from(&id);
                }
                key_ref(&uri)
            })
            .collect()
    }
}

/// A journal's key URI as a key reference: a `pin-value` (never written by suitekey) is
/// refused, like one in a config file.
fn key_ref(uri: &Pkcs11Uri) -> Result<KeyRef, StepError> {
    if uri.pin_value.is_some() {
        return Err(StepError::usage(
            "the rotation journal names a key URI with a pin-value, which suitekey never writes; remove the journal",
        ));
    }
    Ok(KeyRef::new(uri.clone())?)
}

/// Hex digits as bytes.
fn id_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The new key's kind: the curve of an ES* algorithm, or RSA of `--rsa-bits`, else of the
/// current key's size when it is RSA, else 3072 bits.
pub(super) fn key_spec(
    alg: Alg,
    rsa_bits: Option<u32>,
    current: &KeyKind,
) -> Result<KeySpec, StepError> {
    match (alg.scheme(), rsa_bits) {
        (Scheme::Ecdsa(_), Some(_)) => Err(StepError::usage(format!(
            "--rsa-bits is for PS256/PS384/PS512; {alg} keys are EC, leave --rsa-bits out"
        ))),
        (Scheme::Ecdsa(curve), None) => Ok(KeySpec::Ec(curve)),
        (Scheme::Pss, given) => {
            let bits = match (given, current) {
                (Some(bits), _) => bits,
                (None, KeyKind::Rsa { bits }) => u32::try_from(*bits).unwrap_or(0),
                (None, _) => KeySpec::DEFAULT_RSA_BITS,
            };
            let kind = KeyKind::Rsa {
                bits: bits as usize,
            };
            netsuite::check_key(&kind).map_err(|_| {
                StepError::usage(format!(
                    "RSA keys of {bits} bits are not allowed: NetSuite accepts 3072 or 4096 bits; pass --rsa-bits 3072 or 4096"
                ))
            })?;
            Ok(KeySpec::Rsa { bits })
        }
    }
}

/// The labels to try for the new key, in order: `given` alone; else the current label
/// (without an earlier rotation's `-YYYYMMDD` or `-YYYYMMDD-N`) with `-<today>`, then with
/// `-2` to `-9` after it.
pub(super) fn label_candidates(current: &str, given: Option<&str>, today: &str) -> Vec<String> {
    if let Some(given) = given {
        return vec![given.to_owned()];
    }
    let base = format!("{}-{today}", base_label(current));
    std::iter::once(base.clone())
        .chain((2..=9).map(|n| format!("{base}-{n}")))
        .collect()
}

/// `label` without the date suffix an earlier rotation gave it.
fn base_label(label: &str) -> &str {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut base = label;
    if let Some((head, tail)) = base.rsplit_once('-')
        && (1..=2).contains(&tail.len())
        && digits(tail, tail.len())
        && head
            .rsplit_once('-')
            .is_some_and(|(_, date)| digits(date, 8))
    {
        base = head;
    }
    match base.rsplit_once('-') {
        Some((head, date)) if digits(date, 8) && !head.is_empty() => head,
        _ => base,
    }
}

/// The label a retired key gets: its own with `-revoked-<date>`.
pub(super) fn retired_label(old: &str, revoked_on: &str) -> String {
    format!("{old}-revoked-{revoked_on}")
}

/// `now` as `YYYYMMDD` (UTC).
pub(super) fn yyyymmdd(now: SystemTime) -> String {
    match der::DateTime::from_system_time(now) {
        Ok(t) => format!("{:04}{:02}{:02}", t.year(), t.month(), t.day()),
        Err(_) => "00000000".to_owned(),
    }
}

/// The date of an RFC 3339 time as `YYYYMMDD`.
pub(super) fn date_of(rfc3339: &str) -> Option<String> {
    let date: String = rfc3339.get(..10)?.chars().filter(|c| *c != '-').collect();
    (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())).then_some(date)
}

/// A random 8-byte `CKA_ID` for the new key, hex (the token checks that it is free).
pub(super) fn random_id() -> Result<String, StepError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| {
        StepError::token(format!(
            "no random bytes for the new key's id from the operating system: {e}"
        ))
    })?;
    Ok(hex(&id))
}

/// The new key's URI: the current one with `object=` and `id=` of the new key.
pub(super) fn new_key_uri(old: &Pkcs11Uri, label: &str, id: &str) -> Pkcs11Uri {
    let mut uri = old.clone();
    uri.object = Some(label.to_owned());
    uri.id = id_bytes(id);
    uri.pin_value = None;
    uri
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let old_label = self.old_label.as_deref().unwrap_or("(none)");
        writeln!(
            f,
            "current certificate  {} (key '{old_label}')",
            self.old_certificate_id
        )?;
        writeln!(
            f,
            "new key              {} for {}, label '{}', id {}, in the same token",
            self.spec(),
            self.alg,
            self.new_label,
            self.new_key_id
        )?;
        writeln!(
            f,
            "new certificate      {}, valid {} days, mapped to role {} and entity {}",
            self.subject, self.days, self.role, self.entity
        )?;
        let retire = if self.delete_old_key {
            "delete the old key".to_owned()
        } else {
            format!(
                "relabel the old key '{}'",
                retired_label(old_label, "<date>")
            )
        };
        write!(
            f,
            "then                 upload it, get a token with it, switch the profile to key {}, revoke {}, {retire}",
            self.new_key, self.old_certificate_id
        )
    }
}

/// (De)serializes a value through its text form (`Display` and `FromStr`), so that what a
/// journal holds is checked as it is read.
mod as_text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: serde::Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: serde::Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// [`as_text`] for an optional value.
mod opt_text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: serde::Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => serializer.collect_str(v),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: serde::Deserializer<'de>,
    {
        Option::<String>::deserialize(deserializer)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Curve;

    #[test]
    fn the_new_key_keeps_the_family_unless_told_and_rsa_sizes_follow_netsuite() {
        let rsa = KeyKind::Rsa { bits: 4096 };
        let p256 = KeyKind::Ec(Curve::P256);
        assert_eq!(
            key_spec(Alg::ES256, None, &p256).unwrap(),
            KeySpec::Ec(Curve::P256)
        );
        assert_eq!(
            key_spec(Alg::ES384, None, &p256).unwrap(),
            KeySpec::Ec(Curve::P384)
        );
        assert_eq!(
            key_spec(Alg::PS256, None, &rsa).unwrap(),
            KeySpec::Rsa { bits: 4096 }
        );
        assert_eq!(
            key_spec(Alg::PS256, None, &p256).unwrap(),
            KeySpec::Rsa { bits: 3072 }
        );
        assert_eq!(
            key_spec(Alg::PS384, Some(3072), &rsa).unwrap(),
            KeySpec::Rsa { bits: 3072 }
        );
        let err = key_spec(Alg::PS256, Some(2048), &rsa)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3072 or 4096"), "{err}");
        let err = key_spec(Alg::ES256, Some(3072), &p256)
            .unwrap_err()
            .to_string();
        assert!(err.contains("leave --rsa-bits out"), "{err}");
    }

    #[test]
    fn new_labels_carry_the_date_never_pile_up_and_fall_back_to_numbers() {
        let today = "20260215";
        let labels = label_candidates("ns-prod", None, today);
        assert_eq!(labels[0], "ns-prod-20260215");
        assert_eq!(labels[1], "ns-prod-20260215-2");
        assert_eq!(labels.last().unwrap(), "ns-prod-20260215-9");
        for earlier in ["ns-prod-20240101", "ns-prod-20240101-3", "ns-prod"] {
            assert_eq!(
                label_candidates(earlier, None, today)[0],
                "ns-prod-20260215"
            );
        }
        // Only a rotation's own suffix is taken off.
        assert_eq!(label_candidates("key-2", None, today)[0], "key-2-20260215");
        assert_eq!(
            label_candidates("20240101", None, today)[0],
            "20240101-20260215"
        );
        assert_eq!(
            label_candidates("x-1234567", None, today)[0],
            "x-1234567-20260215"
        );
        assert_eq!(label_candidates("ns-prod", Some("mine"), today), ["mine"]);
        assert_eq!(retired_label("ns-prod", today), "ns-prod-revoked-20260215");
    }

    #[test]
    fn the_old_key_is_looked_for_by_its_id_with_its_label_or_its_retired_label() {
        let mut plan = crate::rotation::journal::tests::plan();
        let refs: Vec<String> = plan
            .old_key_refs("ns-prod-revoked-20260215")
            .unwrap()
            .iter()
            .map(|k| k.uri().to_string())
            .collect();
        assert_eq!(refs.len(), 2);
        assert!(refs[0].contains("object=ns-prod;id=%01;"), "{refs:?}");
        assert!(
            refs[1].contains("object=ns-prod-revoked-20260215;id=%01;"),
            "{refs:?}"
        );
        plan.old_label = None;
        let refs = plan.old_key_refs("x").unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].uri().object.as_deref(), refs[0].uri().id.as_deref()),
            (None, Some(&[1u8][..]))
        );
        plan.old_key_id = String::new();
        plan.old_key.object = None;
        assert!(
            plan.old_key_refs("x").unwrap().is_empty(),
            "neither id nor label: not looked for"
        );
    }

    #[test]
    fn dates_are_utc_days() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_801_353_600 + 86_399);
        assert_eq!(yyyymmdd(t), "20270131");
        assert_eq!(date_of("2027-01-31T23:59:59Z").as_deref(), Some("20270131"));
        assert_eq!(date_of("soon"), None);
    }

    #[test]
    fn a_new_key_uri_keeps_the_token_module_and_pin_source() {
        let old: Pkcs11Uri =
            "pkcs11:token=acc;object=ns-prod;type=private?module-path=/m.so&pin-source=file:/p"
                .parse()
                .unwrap();
        let new = new_key_uri(&old, "ns-prod-20260215", "0a0b");
        assert_eq!(
            new.to_string(),
            "pkcs11:token=acc;object=ns-prod-20260215;id=%0A%0B;type=private?module-path=/m.so&pin-source=file:/p"
        );
        assert_eq!(id_bytes("0a0b"), Some(vec![10, 11]));
        assert_eq!(id_bytes("0a0"), None);
        assert_eq!(id_bytes("zz"), None);
        assert_eq!(random_id().unwrap().len(), 16);
    }
}
