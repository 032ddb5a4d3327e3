//! `suitekey emulate`: parse the registrations, bind loopback, print the base URL (stdout's one
//! line) and the token URL (on stderr), serve until SIGINT/SIGTERM.

use std::io::Write;
use std::time::Duration;

use crate::cli::EmulateArgs;
use crate::emulator::{self, ApiOptions, CallFault, Config, Faults, ListShape};
use crate::error::Error;

pub(super) fn run(args: &EmulateArgs, quiet: bool, out: &mut dyn Write) -> Result<(), Error> {
    // Everything the user typed is checked before a socket is opened.
    let addr = emulator::parse_listen(&args.listen)?;
    let registrations = args
        .register
        .iter()
        .map(|spec| emulator::parse_registration(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = Config::new(registrations)?;
    config.faults = Faults {
        fail_first: args.fail_first,
        rate_limit: args.rate_limit,
        delay: Duration::from_millis(args.delay_ms),
    };
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    config.also_accepted = args.accept_aud.clone();
    config.certificate_api = certificate_api(args)?;
    log_registrations(&config.registrations);
    // Two workers: the emulator serves one client at a time in practice.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(emulator::Error::Io)?;
    runtime.block_on(async {
        let signal = emulator::shutdown_signal()?;
        let stdin_closed = stdin_eof(args.exit_on_stdin_eof);
        let shutdown = async move {
            tokio::select! {
                () = signal => {}
                () = stdin_closed => {}
            }
        };
        let listener = emulator::bind(addr).await?;
        let bound = listener.local_addr().map_err(emulator::Error::Io)?;
        let base = emulator::base_url(bound);
        // For people: the URL a client's --token-url needs. Told before stdout's line, so it is
        // there once a caller has read that line; stdout keeps its contract (the base URL only).
        if !quiet {
            let _ = writeln!(
                std::io::stderr(),
                "token URL: {base}{}",
                emulator::TOKEN_PATH
            );
        }
        // The one stdout line, flushed now: callers read it to learn the port.
        writeln!(out, "{base}")?;
        out.flush()?;
        tracing::info!(%bound, "emulator listening");
        emulator::serve(listener, config, shutdown).await?;
        Ok(())
    })
}

/// The certificate API's options from `--fail-certificates`, `--certificate-propagation-ms`
/// and `--certificate-list-shape`.
fn certificate_api(args: &EmulateArgs) -> Result<ApiOptions, emulator::Error> {
    fn flag(flag: &'static str, value: &str) -> impl FnOnce(String) -> emulator::Error {
        let value = value.to_owned();
        move |reason| emulator::Error::Flag {
            flag,
            value,
            reason,
        }
    }
    let faults = args
        .fail_certificates
        .iter()
        .map(|spec| {
            spec.parse::<CallFault>()
                .map_err(flag("--fail-certificates", spec))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shape = &args.certificate_list_shape;
    Ok(ApiOptions {
        faults,
        propagation: Duration::from_millis(args.certificate_propagation_ms),
        list_shape: shape
            .parse::<ListShape>()
            .map_err(flag("--certificate-list-shape", shape))?,
    })
}

/// Logs each registration, with a warning for a certificate outside its validity period: it
/// is registered all the same (validity is checked at each request, as NetSuite does), but
/// whoever runs the emulator should hear why every request with it will be refused.
fn log_registrations(registrations: &[emulator::Registration]) {
    let now = std::time::SystemTime::now();
    for reg in registrations {
        tracing::info!(
            kid = %reg.certificate_id,
            client = %reg.client_id,
            scopes = %reg.scopes,
            role = %reg.mapping.role,
            entity = %reg.mapping.entity,
            manage_certificates = reg.mapping.manage_certificates,
            "registered"
        );
        if now > reg.valid_until || now < reg.valid_from {
            tracing::warn!(
                kid = %reg.certificate_id,
                "the certificate is valid only from {} to {}: token requests with it are refused",
                crate::cert::rfc3339(reg.valid_from),
                crate::cert::rfc3339(reg.valid_until)
            );
        }
    }
}

/// Resolves once stdin reaches end of file (or fails), when `enabled`; never otherwise. Read on
/// a plain thread, not a runtime one, so that a stdin still open never delays shutdown.
fn stdin_eof(enabled: bool) -> impl Future<Output = ()> + Send + 'static {
    let closed = enabled.then(|| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tx.send(());
        });
        rx
    });
    async move {
        match closed {
            Some(rx) => {
                let _ = rx.await;
                tracing::info!("stdin closed, emulator shutting down");
            }
            None => std::future::pending().await,
        }
    }
}
