//! The token side: module, token, PIN source, login, key, and the certificate stored with the
//! key (public key, id, expiry).

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::SystemTime;

use super::Report;
use crate::cert::{Certificate, EXPIRY_NOTICE_DAYS, rfc3339};
use crate::config::Profile;
use crate::jose::{PublicKey, Signer as _};
use crate::kind::{HasKind as _, Kind};
use crate::netsuite;
use crate::pkcs11::pin::{self, PinOrigin};
use crate::pkcs11::{Credential, Key, Module, Token, default_module, hex, resolve_module};
use crate::report::chain;

/// What the key checks learnt that the certificate checks need.
struct KeyFound {
    public_key: Option<PublicKey>,
    certificates: Vec<Vec<u8>>,
}

/// Module, token, PIN source, login, key, then the certificate checks.
pub(super) fn examine(profile: &Profile, login: bool, report: &mut Report) {
    let uri = profile.key.uri();
    let module = resolve_module(uri, profile.module.as_deref())
        .map_err(crate::Error::from)
        .and_then(|path| Ok(Module::load(&path)?));
    let module = match module {
        Ok(module) => {
            let default = match (&uri.module_path, &uri.module_name, &profile.module) {
                (None, None, None) if default_module().as_deref() == Some(module.path()) => {
                    " (p11-kit's proxy, the default)"
                }
                _ => "",
            };
            let description = module.description().unwrap_or_else(|e| e.to_string());
            report.ok(
                "module",
                format!("{}{default} loads: {description}", module.shown_path()),
            );
            module
        }
        Err(e) => {
            report.fail(
                "module",
                chain(&e),
                "install the module's package, or name the right file with module-path= in the key URI, --module or SUITEKEY_MODULE",
            );
            return report.skip_from("token", "token_url", "needs the module");
        }
    };
    let token = match module.select(uri) {
        Ok(token) => token,
        Err(e) => {
            report.fail(
                "token",
                chain(&e),
                "plug the token in, or correct token=/serial= in the key URI (suitekey list shows the tokens)",
            );
            return report.skip_from("pin_source", "token_url", "needs the token");
        }
    };
    if !token_check(&token, report) {
        return report.skip_from("pin_source", "token_url", "the token's PIN is locked");
    }
    let credential = pin_check(&token, profile, login, report);
    let found = match (login, credential) {
        (true, Some(credential)) => with_login(&token, profile, credential, report),
        (true, None) => {
            report.skip("login", "needs a readable PIN");
            report.skip("key", "needs a login");
            None
        }
        (false, _) => {
            if token.summary().login_required {
                report.skip("login", "no PIN sent: pass --login to try it (one C_Login)");
            } else {
                report.skip("login", "the token needs no login");
            }
            without_login(&token, profile, report)
        }
    };
    match found {
        Some(found) => certificate_checks(profile, &found, report),
        None => report.skip_from("certificate", "token_url", "needs the key"),
    }
}

/// The token's own state: `false` when its user PIN is locked (nothing more can be done).
fn token_check(token: &Token, report: &mut Report) -> bool {
    let t = token.summary();
    let detail = format!(
        "'{}' serial {}, {} {} ({})",
        t.label,
        t.serial,
        t.manufacturer,
        t.model,
        t.flags.join(", ")
    );
    if t.pin_locked {
        report.fail(
            "token",
            format!("{detail}: its user PIN is locked"),
            "have the security officer reset the user PIN with the token's own tools",
        );
        return false;
    }
    if t.pin_final_try {
        report.warn(
            "token",
            format!("{detail}: the next wrong PIN locks it, so suitekey sends none"),
            "log in once with the token's own tools and the right PIN to reset the count",
        );
    } else {
        report.ok("token", detail);
    }
    true
}

/// Reads the PIN from the key URI's source (never sends it): the credential to log in with.
fn pin_check(
    token: &Token,
    profile: &Profile,
    login: bool,
    report: &mut Report,
) -> Option<Arc<Credential>> {
    let uri = profile.key.uri();
    let summary = token.summary();
    if !summary.login_required {
        report.ok("pin_source", "the token needs no login, so no PIN");
        return Some(Arc::new(Credential::NotNeeded));
    }
    let remedy = "add pin-source=file:PATH (or credential:NAME under systemd's LoadCredential=) to the key URI, or set SUITEKEY_PIN";
    let value = uri.pin_value.as_ref().map(|v| v.pin());
    match pin::from_sources(uri.pin_source.as_ref(), value) {
        Ok(Some((pin, origin))) => {
            let sent = if login { "sent once below" } else { "not sent" };
            report.ok(
                "pin_source",
                format!("the PIN from {origin} is readable and well-formed ({sent})"),
            );
            Some(Arc::new(Credential::Pin(pin, origin)))
        }
        Ok(None) if summary.protected_auth_path => {
            report.ok("pin_source", "the token takes the PIN on its own PIN pad");
            Some(Arc::new(Credential::PinPad))
        }
        Ok(None) if std::io::stdin().is_terminal() => {
            report.warn(
                "pin_source",
                "no PIN source: suitekey asks on the terminal, which an agent or a job under systemd or cron does not have",
                remedy,
            );
            if !login {
                return None;
            }
            match pin::obtain(None, None, token.label()) {
                Ok((pin, origin)) => Some(Arc::new(Credential::Pin(pin, origin))),
                Err(e) => {
                    report.fail("login", e.to_string(), remedy);
                    report.skip("key", "needs a login");
                    None
                }
            }
        }
        Ok(None) => {
            report.fail(
                "pin_source",
                format!("no PIN source for token '{}'", token.label()),
                remedy,
            );
            None
        }
        Err(e) => {
            report.fail("pin_source", e.to_string(), remedy);
            None
        }
    }
}

/// One `C_Login` (guarded as every login is: a refused PIN is never sent again, none on the
/// final try), then the private key itself and a signer for the profile's algorithm.
fn with_login(
    token: &Token,
    profile: &Profile,
    credential: Arc<Credential>,
    report: &mut Report,
) -> Option<KeyFound> {
    let origin = match &*credential {
        Credential::Pin(_, origin) => origin.to_string(),
        Credential::PinPad => PinOrigin::PinPad.to_string(),
        Credential::NotNeeded => "nowhere (none needed)".to_owned(),
    };
    let opened = Key::open_with(&profile.key, profile.module.as_deref(), &|_| {
        Ok(Arc::clone(&credential))
    });
    let key = match opened {
        Ok(key) => key,
        Err(e) if e.kind() == Kind::Pin => {
            report.fail(
                "login",
                chain(&e),
                "put the token's user PIN in the PIN source; a refused PIN is never sent again by this process, and the token locks after a few",
            );
            report.skip("key", "needs a login");
            return None;
        }
        Err(e) => {
            report.ok(
                "login",
                format!("token '{}' accepted the PIN from {origin}", token.label()),
            );
            report.fail("key", chain(&e), key_remedy());
            return None;
        }
    };
    report.ok(
        "login",
        format!("token '{}' accepted the PIN from {origin}", token.label()),
    );
    let (label, id, kind) = (
        key.label().map(str::to_owned),
        key.id().to_vec(),
        key.kind(),
    );
    match super::super::signer_for(key, profile.alg) {
        Ok(signer) => {
            report.ok(
                "key",
                format!(
                    "{}: {kind}, signs {} in the token",
                    named(label.as_deref(), &id),
                    signer.alg().name()
                ),
            );
            Some(KeyFound {
                public_key: signer.public_key().ok(),
                certificates: signer.stored_certificates().unwrap_or_default(),
            })
        }
        Err(e) => {
            report.fail("key", chain(&e), "use a key NetSuite accepts (RSA 3072/4096, EC P-256/384/521) and an --alg it can sign");
            None
        }
    }
}

/// The key's public object and its stored certificates, without a login.
fn without_login(token: &Token, profile: &Profile, report: &mut Report) -> Option<KeyFound> {
    let uri = profile.key.uri();
    let halves = match crate::pkcs11::public_halves(token, uri) {
        Ok(halves) => halves,
        Err(e) => {
            report.fail("key", chain(&e), key_remedy());
            return None;
        }
    };
    let half = match halves.as_slice() {
        [one] => one,
        [] => {
            report.fail(
                "key",
                format!("no public key in token '{}' matches {}; its private key, if any, stays hidden until a login", token.label(), profile.key),
                format!("{} (or run doctor --login to look for the private key itself)", key_remedy()),
            );
            return None;
        }
        many => {
            report.fail(
                "key",
                format!(
                    "{} public keys in token '{}' match {}",
                    many.len(),
                    token.label(),
                    profile.key
                ),
                "add id= (and object=) to the key URI to name one (suitekey list shows them)",
            );
            return None;
        }
    };
    let alg = match profile.alg {
        Some(alg) => netsuite::check_alg(alg, &half.kind).map(|()| alg),
        None => netsuite::default_alg(&half.kind),
    };
    match alg {
        Ok(alg) => report.ok(
            "key",
            format!(
                "{}: {}, for {} (its public half; --login checks the private key)",
                named(half.label.as_deref(), &half.id),
                half.kind,
                alg.name()
            ),
        ),
        Err(e) => {
            report.fail("key", e.to_string(), "use a key NetSuite accepts (RSA 3072/4096, EC P-256/384/521) and an --alg it can sign");
            return None;
        }
    }
    Some(KeyFound {
        public_key: half.public_key.clone(),
        certificates: half.certificates.clone(),
    })
}

fn key_remedy() -> &'static str {
    "correct object= and id= in the key URI (suitekey list --login --token LABEL shows each key's URI)"
}

fn named(label: Option<&str>, id: &[u8]) -> String {
    format!("'{}' id {}", label.unwrap_or(""), hex(id))
}

/// The certificate stored with the key: its public key, its id, its expiry.
fn certificate_checks(profile: &Profile, found: &KeyFound, report: &mut Report) {
    let certificates: Vec<Certificate> = found
        .certificates
        .iter()
        .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
        .collect();
    let configured = &profile.certificate_id;
    let relevant = certificates
        .iter()
        .find(|c| c.certificate_id() == *configured)
        .or_else(|| certificates.iter().max_by_key(|c| c.not_after()));
    let Some(cert) = relevant else {
        report.warn(
            "certificate",
            "no certificate is stored with the key, so the one NetSuite holds cannot be checked here",
            "store it beside the key: suitekey cert --replace --key URI --out FILE (then upload that one to NetSuite)",
        );
        return report.skip_from(
            "certificate_id",
            "token_url",
            "no certificate stored with the key",
        );
    };
    let id = cert.certificate_id();
    let shown = format!(
        "the certificate stored with the key (id {id}, {})",
        cert.subject()
    );
    match &found.public_key {
        Some(key) if cert.public_key().as_ref() == Ok(key) => {
            report.ok("certificate", format!("{shown} holds its public key"))
        }
        Some(_) => report.fail(
            "certificate",
            format!("{shown} holds another public key: NetSuite would refuse assertions signed with the key (invalid_grant)"),
            "make one for this key with 'suitekey cert --replace --key URI --out FILE' and upload it",
        ),
        None => report.warn(
            "certificate",
            format!("{shown}: the key's public key cannot be read to compare"),
            "store the key's public key object on the token",
        ),
    }
    if id == *configured {
        report.ok(
            "certificate_id",
            format!("the configured certificate-id {configured} is the stored certificate's"),
        );
    } else {
        report.warn(
            "certificate_id",
            format!("the configured certificate-id is {configured}, but the certificate stored with the key has id {id}"),
            format!("if NetSuite shows {id} for the key's certificate, set certificate-id to it; if it shows {configured}, another certificate was uploaded for this key: store that one beside the key"),
        );
    }
    expiry_check(cert, report);
}

/// Days left against NetSuite's expiry notices (60, 30 and 14 days).
fn expiry_check(cert: &Certificate, report: &mut Report) {
    let now = SystemTime::now();
    let (from, to) = (cert.not_before(), cert.not_after());
    let left = cert.days_left(now);
    let renew = "make a new certificate (suitekey cert --replace --key URI --out FILE), upload it, and set certificate-id to the id it prints";
    if to <= now {
        report.fail(
            "expiry",
            format!(
                "the certificate expired on {}: NetSuite refuses its assertions (invalid_grant)",
                rfc3339(to)
            ),
            renew,
        );
    } else if from > now {
        report.fail(
            "expiry",
            format!("the certificate is not valid until {}", rfc3339(from)),
            "check this machine's clock, or wait",
        );
    } else if let Some(notice) = EXPIRY_NOTICE_DAYS
        .iter()
        .rev()
        .find(|d| left < i64::from(**d))
    {
        report.warn(
            "expiry",
            format!(
                "{left} days left (until {}), within NetSuite's {notice}-day notice",
                rfc3339(to)
            ),
            format!("{renew}, before it expires"),
        );
    } else {
        report.ok(
            "expiry",
            format!("{left} days left (until {})", rfc3339(to)),
        );
    }
}
