//! The profile's fields, declared once.
//!
//! Each declaration below gives a field's help text, its flag and environment variable (to
//! clap), the type clap reads it as, the type the profile holds (when it differs), and whether
//! a profile needs it. Its key in the config file is its flag's name. From this one list come
//! [`ProfileOverrides`] (the fields flags and `SUITEKEY_*` variables give, which `cli` flattens
//! into every command that takes a profile), [`Profile`] (the fields checked), the keys a
//! profile table may have, and the merge of flags over the file (see `resolve`). A new field is
//! one declaration here and the code that uses it.

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::Args;

use super::values::{RawArg, RotateBeforeDays, Setting, Timeout};
use crate::exchange::CaFile;
use crate::jose::Alg;
use crate::netsuite::{
    AccountId, CertificateId, CertificatesUrl, ClientId, InternalId, Scopes, TokenUrl,
};
use crate::pkcs11::uri::KeyRef;

/// The profile's fields. Each is `name: GIVEN => VALUE, RULE;` under its doc comment (the help
/// text) and clap attribute: clap reads the flag as `GIVEN`, the profile holds a `VALUE`
/// (`=> VALUE` is left out when it is the same type; see [`Setting`] for how one becomes the
/// other), and `RULE` is `required` (a profile without one is refused), `optional` (the profile
/// holds an `Option`) or `defaulted` (the type's default when not given). `--help` shows the
/// flags in this order, and the file's keys are listed in it.
macro_rules! profile_fields {
    ($(
        $(#[doc = $doc:literal])*
        #[arg($($arg:tt)*)]
        $field:ident: $given:ty $(=> $value:ty)?, $rule:ident;
    )*) => {
        /// The profile fields that flags and `SUITEKEY_*` variables give (clap reads both into
        /// it), each as given; one present wins over the file's.
        #[derive(Clone, Debug, Default, Args)]
        pub struct ProfileOverrides {
            $( $(#[doc = $doc])* #[arg($($arg)*)] pub $field: Option<$given>, )*
        }

        /// A complete, validated profile: everything a command needs to sign and exchange.
        #[derive(Clone, Debug)]
        pub struct Profile {
            $( $(#[doc = $doc])* pub $field: held!($rule, value!($given $(=> $value)?)), )*
        }

        impl ProfileOverrides {
            /// Whether no field is given.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }

            /// Each field as given here, else as `source` has it, checked.
            pub(super) fn resolve_each<S: FieldSource>(self, source: &S) -> Resolved<S::Error> {
                Resolved {
                    $( $field: source.$rule::<value!($given $(=> $value)?), $given>(
                        stringify!($field),
                        self.$field,
                    ), )*
                }
            }
        }

        /// Each field of a profile, checked, or why it is refused.
        pub(super) struct Resolved<E> {
            $( pub $field: Result<held!($rule, value!($given $(=> $value)?)), E>, )*
        }

        impl<E> Resolved<E> {
            /// The fields refused, in the order declared.
            pub(super) fn refused(&self) -> Vec<&'static str> {
                [$( (stringify!($field), self.$field.is_err()) ),*]
                    .into_iter()
                    .filter_map(|(field, refused)| refused.then_some(field))
                    .collect()
            }

            /// The profile, or why the field `first` is refused (else any refused field's).
            pub(super) fn into_profile(self, first: Option<&str>) -> Result<Profile, E> {
                let Resolved { $($field),* } = self;
                $( let $field = match $field {
                    Err(e) if first == Some(stringify!($field)) => return Err(e),
                    other => other,
                }; )*
                Ok(Profile { $( $field: $field?, )* })
            }
        }

        /// The fields' names in the code (clap's argument ids), in the order declared.
        const DECLARED: &[&str] = &[$(stringify!($field)),*];
    };
}

/// The type a profile holds a field's value as: `VALUE` when declared, else `GIVEN`.
macro_rules! value {
    ($given:ty) => {
        $given
    };
    ($given:ty => $value:ty) => {
        $value
    };
}

/// A [`Profile`] field's type for its rule.
macro_rules! held {
    (required, $value:ty) => { $value };
    (optional, $value:ty) => { Option<$value> };
    (defaulted, $value:ty) => { $value };
}

profile_fields! {
    /// The private key, as an RFC 7512 URI: pkcs11:token=…;object=…?module-path=…&pin-source=file:…
    #[arg(long, env = "SUITEKEY_KEY", value_name = "URI", hide_env_values = true)]
    key: RawArg => KeyRef, required;
    /// The integration record's client id (consumer key): the assertion's iss.
    #[arg(
        long,
        env = "SUITEKEY_CLIENT_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    client_id: ClientId, required;
    /// The certificate id NetSuite shows for the uploaded certificate: the assertion's kid.
    #[arg(
        long,
        env = "SUITEKEY_CERTIFICATE_ID",
        value_name = "ID",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    certificate_id: CertificateId, required;
    /// The NetSuite account id, e.g. 1234567 or 1234567_SB1.
    #[arg(
        long,
        env = "SUITEKEY_ACCOUNT",
        value_name = "ACCOUNT",
        hide_env_values = true
    )]
    account: AccountId, required;
    /// ES256, ES384, ES512, PS256, PS384 or PS512 [default: from the key].
    #[arg(long, value_name = "ALG")]
    alg: Alg, optional;
    /// Scopes, comma-separated: restlets, rest_webservices, suite_analytics [default: restlets,rest_webservices].
    #[arg(long = "scope", value_name = "SCOPES")]
    scopes: Scopes, defaulted;
    /// Token endpoint (and aud) instead of the account's NetSuite URL; http:// only on loopback.
    #[arg(
        long,
        env = "SUITEKEY_TOKEN_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    token_url: RawArg => TokenUrl, optional;
    /// The PKCS#11 module, when the key URI names none. Every command has `--module`, so clap
    /// reads it through [`ModuleArg`], which `cli::ProfileArgs::overrides` copies here.
    #[arg(skip)]
    module: PathBuf, optional;
    /// PEM file of the private CA the token endpoint's certificate must chain to; it replaces the operating system's roots (like curl --cacert).
    #[arg(
        long,
        env = "SUITEKEY_CA_FILE",
        value_name = "FILE",
        hide_env_values = true
    )]
    ca_file: PathBuf => CaFile, optional;
    /// Seconds each attempt at the token endpoint may take, from connecting to the answer's
    /// last byte (1 to 300) [default: 30]; a retry has a limit of its own.
    #[arg(long, env = "SUITEKEY_TIMEOUT", value_name = "SECS")]
    timeout: Timeout, optional;
    /// NetSuite's certificate management API (rotate) instead of the account's restlets host,
    /// or a loopback token URL's origin; http:// only on loopback.
    #[arg(
        long,
        env = "SUITEKEY_CERTIFICATES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    certificates_url: RawArg => CertificatesUrl, optional;
    /// The role (NetSuite internal id) the certificate is mapped to, for rotate's new one
    /// [default: the current certificate's].
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    role: InternalId, optional;
    /// The entity (NetSuite internal id) the certificate is mapped to, for rotate's new one
    /// [default: the current certificate's].
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    entity: InternalId, optional;
    /// For the agent: rotate the certificate (as rotate does) once it has this many days or
    /// fewer left, 1 to 365 [default: never].
    #[arg(long, value_name = "DAYS")]
    rotate_before_days: RotateBeforeDays, optional;
}

/// `--module`: the PKCS#11 module to load when a key URI names none (every command's, and a
/// profile's `module` field).
#[derive(Debug, Args)]
pub struct ModuleArg {
    /// PKCS#11 module, when the key URI has no module-path (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(
        id = "module",
        long = "module",
        env = "SUITEKEY_MODULE",
        value_name = "PATH",
        hide_env_values = true
    )]
    pub path: Option<PathBuf>,
}

/// Where [`ProfileOverrides::resolve_each`] takes the fields the flags leave out, and how it
/// checks each (`resolve` merges the file's table this way). `field` is the field's name in
/// the code; [`names`] gives its key, flag and variable.
pub(super) trait FieldSource {
    /// Why a field is refused.
    type Error;

    /// A field a profile must have.
    fn required<T: Setting<G>, G>(
        &self,
        field: &'static str,
        given: Option<G>,
    ) -> Result<T, Self::Error>;

    /// A field a profile may leave out.
    fn optional<T: Setting<G>, G>(
        &self,
        field: &'static str,
        given: Option<G>,
    ) -> Result<Option<T>, Self::Error>;

    /// A field whose type's default stands in when it is left out.
    fn defaulted<T: Setting<G> + Default, G>(
        &self,
        field: &'static str,
        given: Option<G>,
    ) -> Result<T, Self::Error> {
        self.optional(field, given).map(Option::unwrap_or_default)
    }
}

/// A field's names, as users see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FieldNames {
    /// The key in a profile table (`client-id`).
    pub key: &'static str,
    /// The flag (`--client-id`).
    pub flag: &'static str,
    /// The environment variable, if clap reads one (`SUITEKEY_CLIENT_ID`).
    pub env: Option<&'static str>,
}

/// The names of each declared field, read once from clap's definition of the flags, so that
/// the flag, the variable and the file's key cannot drift apart.
struct Names {
    field: &'static str,
    flag: String,
    env: Option<String>,
}

static NAMES: LazyLock<Vec<Names>> = LazyLock::new(|| {
    let flags = ModuleArg::augment_args(ProfileOverrides::augment_args(clap::Command::new("")));
    DECLARED
        .iter()
        .map(|&field| {
            let arg = flags.get_arguments().find(|a| a.get_id() == field);
            let long = arg.and_then(|a| a.get_long());
            Names {
                field,
                flag: format!(
                    "--{}",
                    long.map_or_else(|| field.replace('_', "-"), str::to_owned)
                ),
                env: arg
                    .and_then(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned()),
            }
        })
        .collect()
});

static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    NAMES
        .iter()
        .map(|n| n.flag.trim_start_matches('-'))
        .collect()
});

/// The names of the field called `field` in the code.
pub(super) fn names(field: &'static str) -> FieldNames {
    match NAMES.iter().find(|n| n.field == field) {
        Some(n) => FieldNames {
            key: n.flag.trim_start_matches('-'),
            flag: &n.flag,
            env: n.env.as_deref(),
        },
        // Not reached: every caller names a declared field (a test checks each has a flag).
        None => FieldNames {
            key: field,
            flag: field,
            env: None,
        },
    }
}

/// The keys a profile table may have, in the order declared.
pub(super) fn keys() -> &'static [&'static str] {
    &KEYS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_flag_named_as_its_key() {
        let flags = ModuleArg::augment_args(ProfileOverrides::augment_args(clap::Command::new("")));
        for field in DECLARED {
            let arg = flags.get_arguments().find(|a| a.get_id() == *field);
            let long = arg.and_then(|a| a.get_long());
            assert_eq!(long, Some(names(field).key), "{field}");
        }
        assert_eq!(
            names("client_id"),
            FieldNames {
                key: "client-id",
                flag: "--client-id",
                env: Some("SUITEKEY_CLIENT_ID")
            }
        );
        assert_eq!(names("scopes").key, "scope");
        assert_eq!(names("alg").env, None);
    }
}
