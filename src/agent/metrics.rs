//! The agent's counters, per profile, and their Prometheus text form (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One profile's counters. Kept across a reload that leaves the profile unchanged.
#[derive(Default)]
pub struct ProfileMetrics {
    tokens_issued: AtomicU64,
    cache_hits: AtomicU64,
    exchanges: AtomicU64,
    signatures: AtomicU64,
    sessions_reopened: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl ProfileMetrics {
    /// An access token was handed to a client.
    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered from the cache, without an exchange of its own.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// An exchange with the token endpoint began (its retries included).
    pub fn exchange(&self) {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
    }

    /// An exchange failed with `code` (NetSuite's error code, or what failed).
    pub fn failure(&self, code: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        *failures.entry(code.to_owned()).or_default() += 1;
    }

    /// The token made a signature.
    pub fn signature(&self) {
        self.signatures.fetch_add(1, Ordering::Relaxed);
    }

    /// A lost session was replaced.
    pub fn session_reopened(&self) {
        self.sessions_reopened.fetch_add(1, Ordering::Relaxed);
    }
}

/// A metric's name, help text and how to read it from one profile's counters.
struct Counter {
    name: &'static str,
    help: &'static str,
    read: fn(&ProfileMetrics) -> u64,
}

const COUNTERS: [Counter; 5] = [
    Counter {
        name: "suitekey_agent_tokens_issued_total",
        help: "Access tokens handed to local clients.",
        read: |m| m.tokens_issued.load(Ordering::Relaxed),
    },
    Counter {
        name: "suitekey_agent_cache_hits_total",
        help: "Token requests answered from the cache without an exchange of their own.",
        read: |m| m.cache_hits.load(Ordering::Relaxed),
    },
    Counter {
        name: "suitekey_agent_upstream_exchanges_total",
        help: "Exchanges with the token endpoint (each with up to 3 attempts).",
        read: |m| m.exchanges.load(Ordering::Relaxed),
    },
    Counter {
        name: "suitekey_agent_signatures_total",
        help: "Client assertions signed in the token.",
        read: |m| m.signatures.load(Ordering::Relaxed),
    },
    Counter {
        name: "suitekey_agent_sessions_reopened_total",
        help: "PKCS#11 sessions reopened after the token lost one.",
        read: |m| m.sessions_reopened.load(Ordering::Relaxed),
    },
];

/// One profile's line in the report: its name, counters, and the days its certificate has
/// left when the token holds it.
pub type Row<'a> = (&'a str, &'a ProfileMetrics, Option<i64>);

/// The Prometheus text exposition of every profile's counters.
pub fn render<'a>(profiles: impl Iterator<Item = Row<'a>> + Clone) -> String {
    let mut out = String::new();
    for counter in &COUNTERS {
        header(&mut out, counter.name, counter.help, "counter");
        for (name, m, _) in profiles.clone() {
            let _ = writeln!(
                out,
                "{}{{profile=\"{}\"}} {}",
                counter.name,
                escape(name),
                (counter.read)(m)
            );
        }
    }
    const FAILURES: &str = "suitekey_agent_upstream_failures_total";
    header(
        &mut out,
        FAILURES,
        "Failed exchanges, by NetSuite error code or failure.",
        "counter",
    );
    for (name, m, _) in profiles.clone() {
        let failures = m.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for (code, n) in failures.iter() {
            let _ = writeln!(
                out,
                "{FAILURES}{{profile=\"{}\",code=\"{}\"}} {n}",
                escape(name),
                escape(code)
            );
        }
    }
    const DAYS: &str = "suitekey_agent_certificate_days_left";
    header(
        &mut out,
        DAYS,
        "Days until the profile's certificate (found on the token by its certificate id) expires.",
        "gauge",
    );
    for (name, _, days) in profiles {
        if let Some(days) = days {
            let _ = writeln!(out, "{DAYS}{{profile=\"{}\"}} {days}", escape(name));
        }
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_rendered_per_profile_with_escaped_labels() {
        let m = ProfileMetrics::default();
        m.token_issued();
        m.token_issued();
        m.failure("server_error");
        let other = ProfileMetrics::default();
        let text = render([("prod", &m, Some(42)), ("we\"ird", &other, None)].into_iter());
        assert!(
            text.contains("suitekey_agent_tokens_issued_total{profile=\"prod\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("suitekey_agent_tokens_issued_total{profile=\"we\\\"ird\"} 0\n"),
            "{text}"
        );
        assert!(text.contains(
            "suitekey_agent_upstream_failures_total{profile=\"prod\",code=\"server_error\"} 1\n"
        ));
        assert!(text.contains("suitekey_agent_certificate_days_left{profile=\"prod\"} 42\n"));
        assert!(
            !text.contains("certificate_days_left{profile=\"we"),
            "unknown days are left out"
        );
        assert!(text.contains("# TYPE suitekey_agent_certificate_days_left gauge"));
    }
}
