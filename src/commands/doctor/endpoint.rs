//! The token endpoint: its host belongs to the account, TLS to it verifies (with `--ca-file`,
//! only against that CA), and this machine's clock agrees with its `Date`. One `HEAD` request;
//! no assertion is sent.

use std::time::{Duration, Instant, SystemTime};

use super::Report;
use crate::config::Profile;
use crate::exchange::{ExchangeError, TokenClient};
use crate::report::chain;

/// How far this clock may run ahead of the endpoint's: NetSuite refuses an assertion issued in
/// the future (`iat`), and the `Date` header counts whole seconds.
const AHEAD_LIMIT: i64 = 5;
/// How far it may lag before a warning, and before the default 300 s assertion lifetime is
/// mostly spent by the time it arrives (a failure).
const BEHIND_WARNING: i64 = 30;
const BEHIND_LIMIT: i64 = 240;

pub(super) fn examine(profile: &Profile, report: &mut Report) {
    let url = match profile.endpoint() {
        Ok(url) => url,
        Err(e) => {
            report.fail("token_url", e.to_string(), "correct token-url or account");
            return report.skip_from("tls", "agent", "needs the token URL");
        }
    };
    if let Err(e) = profile.account.check_token_url(&url) {
        report.fail(
            "token_url",
            e.to_string(),
            "drop --token-url (the account's own endpoint is used) or name one on the account's host",
        );
        return report.skip_from(
            "tls",
            "agent",
            "nothing is sent to a host that is not the account's",
        );
    }
    let host = url.url().host_str().unwrap_or_default().to_owned();
    let loopback = !host.ends_with(".netsuite.com");
    report.ok(
        "token_url",
        if loopback {
            format!("{url} is on loopback: an emulator or a local proxy, not NetSuite itself")
        } else {
            format!("{url} is account {}'s", profile.account)
        },
    );
    let started = Instant::now();
    let probe = TokenClient::new(profile.client_options(&url))
        .map_err(|e| chain(&e))
        .and_then(|client| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(client.probe(&url))
                .map_err(|e| describe(&e))
        });
    let (status, date) = match probe {
        Ok(answer) => answer,
        Err(detail) => {
            report.fail(
                "tls",
                detail,
                "check the network path to the endpoint; for a private CA pass --ca-file (config ca-file) with its PEM",
            );
            return report.skip("clock", "needs an answer from the endpoint");
        }
    };
    let trust = match &profile.ca_file {
        Some(ca) => format!("against --ca-file {}", ca.path().display()),
        None => "against the system's roots".to_owned(),
    };
    if url.url().scheme() == "https" {
        report.ok(
            "tls",
            format!(
                "TLS to {host} verified {trust}; HEAD answered HTTP {}",
                status.as_u16()
            ),
        );
    } else {
        report.ok(
            "tls",
            format!(
                "plain http on loopback, no TLS; HEAD answered HTTP {}",
                status.as_u16()
            ),
        );
    }
    clock_check(date, started, report);
}

/// The endpoint's error, one line with its causes.
fn describe(e: &ExchangeError) -> String {
    chain(e)
}

/// This clock against the endpoint's `Date`, taken halfway through the request.
fn clock_check(date: Option<SystemTime>, started: Instant, report: &mut Report) {
    let Some(server) = date else {
        return report.warn(
            "clock",
            "the endpoint sent no Date header, so the clocks cannot be compared",
            "make sure this machine's clock is synchronised (timedatectl, chrony)",
        );
    };
    let local = SystemTime::now() - started.elapsed() / 2;
    let ahead = match local.duration_since(server) {
        Ok(d) => secs(d),
        Err(e) => -secs(e.duration()),
    };
    let remedy = "synchronise this machine's clock (timedatectl set-ntp true, chrony)";
    if ahead > AHEAD_LIMIT {
        report.fail("clock", format!("this clock is {ahead} s ahead of the endpoint's: NetSuite refuses assertions issued in the future"), remedy);
    } else if -ahead > BEHIND_LIMIT {
        report.fail("clock", format!("this clock is {} s behind the endpoint's: assertions would arrive expired or nearly so", -ahead), remedy);
    } else if -ahead > BEHIND_WARNING {
        report.warn(
            "clock",
            format!("this clock is {} s behind the endpoint's", -ahead),
            remedy,
        );
    } else {
        report.ok(
            "clock",
            format!(
                "within {} s of the endpoint's (Date header)",
                ahead.abs().max(1)
            ),
        );
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
