//! `--register client-id=ID,cert=FILE[,scopes=a+b][,account=ACCT][,certificate-id=ID]
//! [,role=ID][,entity=ID][,permissions=manage-certificates]`: a certificate "uploaded" to the
//! emulated account, refused the way NetSuite refuses an upload.

use std::path::Path;
use std::time::SystemTime;

use super::Error;
use super::rules::{InternalId, Lifecycle, Mapping, Registration};
use crate::cert::Certificate;
use crate::jose::PublicKey;
use crate::netsuite::{AccountId, CertificateId, ClientId, Scopes, usable_algs};

/// The keys a spec may have.
const KEYS: &str = "client-id, cert, scopes, account, certificate-id, role, entity, permissions";

/// The one permission a role can be given: NetSuite's "Manage own OAuth 2.0 Client
/// Credentials certificates", which the certificate API needs.
pub const MANAGE_CERTIFICATES: &str = "manage-certificates";

/// Parses one `--register` spec and loads its certificate.
///
/// Items are separated by `,` (so a certificate path cannot contain one) and scopes by `+`.
/// The certificate id is the one NetSuite would show (`x5t#S256`) unless `certificate-id=`
/// overrides it; scopes default to all three; `account=` makes that account's real NetSuite
/// token URL a valid `aud` as well. `role=` and `entity=` are the mapping's internal ids
/// (default 3, the Administrator role, and -5, the account's first administrator);
/// `permissions=manage-certificates` gives that role the permission the certificate API needs.
pub fn parse_registration(spec: &str) -> Result<Registration, Error> {
    let bad = |reason: String| Error::Register {
        spec: spec.to_owned(),
        reason,
    };
    let items = Items::parse(spec).map_err(bad)?;
    let client_id: ClientId = items
        .client_id
        .ok_or_else(|| bad("client-id=ID is missing".into()))?
        .parse()
        .map_err(|e: crate::netsuite::Error| bad(e.to_string()))?;
    let path = items
        .cert
        .ok_or_else(|| bad("cert=FILE is missing".into()))?;
    let scopes = match items.scopes {
        Some(s) => s
            .parse::<Scopes>()
            .map_err(|e| bad(format!("{e} (separate scopes with '+')")))?,
        None => Scopes::all(),
    };
    let account = items
        .account
        .map(str::parse::<AccountId>)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let mapping = items.mapping().map_err(bad)?;
    let certificate = Certificate::load(Path::new(path)).map_err(|source| Error::Certificate {
        spec: spec.to_owned(),
        source,
    })?;
    let public_key = usable_key(&certificate).map_err(bad)?;
    let certificate_id = match items.certificate_id {
        Some(id) => id
            .parse::<CertificateId>()
            .map_err(|e| bad(e.to_string()))?,
        None => certificate.certificate_id(),
    };
    Ok(Registration {
        client_id,
        certificate_id,
        public_key,
        scopes,
        account,
        valid_from: certificate.not_before(),
        valid_until: certificate.not_after(),
        mapping,
        lifecycle: Lifecycle::uploaded_at(SystemTime::now()),
    })
}

/// The values of a spec's items, each given at most once, not yet checked.
#[derive(Default)]
struct Items<'a> {
    client_id: Option<&'a str>,
    cert: Option<&'a str>,
    scopes: Option<&'a str>,
    account: Option<&'a str>,
    certificate_id: Option<&'a str>,
    role: Option<&'a str>,
    entity: Option<&'a str>,
    permissions: Option<&'a str>,
}

impl<'a> Items<'a> {
    /// Splits a spec into its `key=value` items; `Err` says what is wrong with one.
    fn parse(spec: &'a str) -> Result<Items<'a>, String> {
        let mut items = Items::default();
        for item in spec.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not key=value (keys: {KEYS})"))?;
            let slot = match key.trim() {
                "client-id" => &mut items.client_id,
                "cert" => &mut items.cert,
                "scopes" => &mut items.scopes,
                "account" => &mut items.account,
                "certificate-id" => &mut items.certificate_id,
                "role" => &mut items.role,
                "entity" => &mut items.entity,
                "permissions" => &mut items.permissions,
                other => return Err(format!("unknown key '{other}' (keys: {KEYS})")),
            };
            if slot.replace(value.trim()).is_some() {
                return Err(format!("'{}' is given twice", key.trim()));
            }
        }
        Ok(items)
    }

    /// The mapping the items name: `role=` and `entity=` as internal ids (defaults as
    /// [`Mapping::default`]) and the `+`-separated `permissions=`.
    fn mapping(&self) -> Result<Mapping, String> {
        let id = |value: Option<&str>, key: &str, default: InternalId| match value {
            None => Ok(default),
            Some(text) => InternalId::parse(text).ok_or_else(|| {
                format!("{key}={text} is not a NetSuite internal id (an integer, such as 3 or -5)")
            }),
        };
        let defaults = Mapping::default();
        let mut mapping = Mapping {
            role: id(self.role, "role", defaults.role)?,
            entity: id(self.entity, "entity", defaults.entity)?,
            manage_certificates: false,
        };
        for name in self.permissions.into_iter().flat_map(|p| p.split('+')) {
            match name.trim() {
                MANAGE_CERTIFICATES => mapping.manage_certificates = true,
                "" => {}
                other => {
                    return Err(format!(
                        "unknown permission '{other}' (the one known: {MANAGE_CERTIFICATES})"
                    ));
                }
            }
        }
        Ok(mapping)
    }
}

/// The certificate's public key, when NetSuite would accept its upload: it refuses a
/// certificate whose key it cannot use, and so does the emulator.
fn usable_key(certificate: &Certificate) -> Result<PublicKey, String> {
    let usable = |key: &PublicKey| !usable_algs(&key.kind()).is_empty();
    certificate.public_key().ok().filter(usable).ok_or_else(|| {
        format!(
            "NetSuite refuses certificates with a {} key; it accepts RSA 3072/4096 and EC P-256, P-384, P-521",
            certificate.key_kind()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse_registration(spec).unwrap_err().to_string()
    }

    #[test]
    fn spec_errors_name_the_problem() {
        assert!(err("cert=x.pem").contains("client-id=ID is missing"));
        assert!(err("client-id=abc").contains("cert=FILE is missing"));
        assert!(err("client-id=abc,cert=x,colour=red").contains("unknown key 'colour'"));
        assert!(err("client-id=abc,client-id=def,cert=x").contains("given twice"));
        assert!(err("client-id=abc,cert").contains("not key=value"));
        assert!(err("client-id=a-b,cert=x").contains("client id 'a-b' is not valid"));
        assert!(
            err("client-id=abc,cert=x,scopes=restlets+bogus").contains("unknown scope 'bogus'")
        );
        assert!(err("client-id=abc,cert=x,account=12 34").contains("account id"));
        assert!(
            err("client-id=abc,cert=x,role=admin")
                .contains("role=admin is not a NetSuite internal id")
        );
        assert!(err("client-id=abc,cert=x,entity=1.5").contains("entity=1.5 is not"));
        assert!(
            err("client-id=abc,cert=x,permissions=manage-certificates+fly")
                .contains("unknown permission 'fly' (the one known: manage-certificates)")
        );
        let msg = err("client-id=abc,cert=/nonexistent/cert.pem");
        assert!(
            msg.contains("cannot read certificate file '/nonexistent/cert.pem'"),
            "{msg}"
        );
    }
}
