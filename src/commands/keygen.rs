//! `suitekey keygen`: a non-extractable key pair made inside the token, and its self-signed
//! certificate.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use super::cert::{Store, cert_signature, issue, subject_name};
use super::outfile::OutFile;
use crate::cert::CertRequest;
use crate::cli::KeygenArgs;
use crate::error::Error;
use crate::jose::{Alg, KeyKind, Scheme};
use crate::netsuite;
use crate::pkcs11::{Key, KeySpec, KeygenPlan, Pkcs11Uri};

pub(super) fn run(args: &KeygenArgs, quiet: bool, out: &mut dyn Write) -> Result<(), Error> {
    // Everything that can be refused is refused before the key exists.
    let spec = key_spec(args.alg, args.rsa_bits)?;
    let uri = super::key_uri(&args.key)?;
    let outfile = OutFile::check(&args.cert.out, args.cert.force)?;
    let management_key = super::management_key(args.cert.management_key_source.as_ref())?;
    let subject = subject_name(args.cert.subject.as_deref(), uri.object.as_deref())?;
    let signature = cert_signature(args.alg, args.cert.cert_sig)?;
    let plan = KeygenPlan::prepare(
        &uri,
        args.cert.module.path.as_deref(),
        (spec, args.alg),
        management_key.clone(),
    )?;
    let key = with_spinner(spec, quiet, || plan.generate())?;
    let made = made_uri(&uri, &key);
    if !quiet {
        let _ = writeln!(
            std::io::stderr(),
            "made {spec} key pair in the token; the private key is sensitive and never extractable\nkey URI: {made}"
        );
    }
    let finish = |out: &mut dyn Write| {
        let signer = key.signer(args.alg)?;
        let request = CertRequest {
            subject,
            days: args.cert.days,
            signature,
        };
        // Any certificate with the new key's id is the module's own placeholder (ykcs11 puts
        // one in the slot): prepare() saw no object with that id.
        let store = Store {
            replace: true,
            management_key: management_key.clone(),
        };
        issue(&signer, &request, (&outfile, store), quiet, out)
    };
    finish(out).map_err(|source| Error::AfterKeygen {
        key: made,
        source: Box::new(source),
    })
}

/// The key pair `alg` needs: its curve, or RSA of `--rsa-bits` (3072 by default).
fn key_spec(alg: Alg, rsa_bits: Option<u32>) -> Result<KeySpec, Error> {
    match (alg.scheme(), rsa_bits) {
        (Scheme::Ecdsa(_), Some(_)) => Err(Error::Usage(format!(
            "--rsa-bits is for PS256/PS384/PS512; {alg} keys are EC, leave --rsa-bits out"
        ))),
        (Scheme::Ecdsa(curve), None) => Ok(KeySpec::Ec(curve)),
        (Scheme::Pss, None) => Ok(KeySpec::Rsa {
            bits: KeySpec::DEFAULT_RSA_BITS,
        }),
        (Scheme::Pss, Some(bits)) => match netsuite::check_key(&KeyKind::Rsa {
            bits: bits as usize,
        }) {
            Ok(()) => Ok(KeySpec::Rsa { bits }),
            Err(_) => Err(Error::Usage(format!(
                "--rsa-bits {bits} is not allowed: NetSuite accepts RSA keys of 3072 or 4096 bits"
            ))),
        },
    }
}

/// The new key's URI, with its own label (a PIV module names its keys itself) and id, ready
/// for `--key` (no PIN, no secrets).
fn made_uri(asked: &Pkcs11Uri, key: &Key) -> String {
    let mut uri = asked.clone();
    uri.object = key.label().map(str::to_owned).or(uri.object);
    uri.id = Some(key.id().to_vec());
    uri.pin_value = None;
    uri.redacted()
}

/// Runs `work` with a spinner on stderr when it is a terminal: RSA-4096 can take a while.
fn with_spinner<T>(spec: KeySpec, quiet: bool, work: impl FnOnce() -> T) -> T {
    if quiet || !std::io::stderr().is_terminal() {
        return work();
    }
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("generating an {spec} key pair in the token…"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = work();
    spinner.finish_and_clear();
    result
}
