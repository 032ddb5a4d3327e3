//! The agent's counters, per profile and for its connections, and their Prometheus text form
//! (`GET /metrics`).

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

/// Why a connection was closed at once (see `agent::connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The agent held as many connections as it may.
    AgentLimit,
    /// The client's process held as many connections as one process may.
    ProcessLimit,
    /// The peer's uid is not allowed (answered 403, or closed when too many are refused).
    Uid,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::AgentLimit, Refusal::ProcessLimit, Refusal::Uid];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::AgentLimit => "agent_limit",
            Refusal::ProcessLimit => "process_limit",
            Refusal::Uid => "uid",
        }
    }
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A request head was not complete in time.
    Header,
    /// No request came in time.
    Idle,
}

impl Timeout {
    const ALL: [Timeout; 2] = [Timeout::Header, Timeout::Idle];

    /// The `timeout` label.
    pub fn label(self) -> &'static str {
        match self {
            Timeout::Header => "header",
            Timeout::Idle => "idle",
        }
    }

    /// Why the connection was closed, in words.
    pub fn message(self) -> &'static str {
        match self {
            Timeout::Header => "the request head did not arrive in time",
            Timeout::Idle => "no request came in time",
        }
    }
}

/// The agent's connection counters (for the whole agent, not per profile).
#[derive(Default)]
pub struct ConnectionMetrics {
    refused: [AtomicU64; 3],
    timed_out: [AtomicU64; 2],
}

impl ConnectionMetrics {
    /// A connection was closed at once, for `reason`.
    pub fn refused(&self, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed by `timeout`.
    pub fn timed_out(&self, timeout: Timeout) {
        self.timed_out[timeout as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The connection lines of the report: `metrics` and the connections open now.
pub fn render_connections(out: &mut String, metrics: &ConnectionMetrics, open: usize) {
    const OPEN: &str = "suitekey_agent_connections_open";
    header(out, OPEN, "Connections open now.", "gauge");
    let _ = writeln!(out, "{OPEN} {open}");
    const REFUSED: &str = "suitekey_agent_connections_refused_total";
    header(
        out,
        REFUSED,
        "Connections closed at once: over the agent's or one process's limit, or from a uid not allowed.",
        "counter",
    );
    for reason in Refusal::ALL {
        let n = metrics.refused[reason as usize].load(Ordering::Relaxed);
        let _ = writeln!(out, "{REFUSED}{{reason=\"{}\"}} {n}", reason.label());
    }
    const TIMED_OUT: &str = "suitekey_agent_connections_timed_out_total";
    header(
        out,
        TIMED_OUT,
        "Connections closed because a request head or the next request did not come in time.",
        "counter",
    );
    for timeout in Timeout::ALL {
        let n = metrics.timed_out[timeout as usize].load(Ordering::Relaxed);
        let _ = writeln!(out, "{TIMED_OUT}{{timeout=\"{}\"}} {n}", timeout.label());
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

/// One profile's rotation line in the report: its name, its rotations that succeeded and
/// failed, and its certificate's end of validity when the token holds it.
pub type RotationRow<'a> = (&'a str, (u64, u64), Option<std::time::SystemTime>);

/// The rotation lines of the report: rotations by result, and each certificate's not-after
/// time in Unix seconds.
pub fn render_rotations<'a>(out: &mut String, rows: impl Iterator<Item = RotationRow<'a>> + Clone) {
    const ROTATIONS: &str = "suitekey_agent_rotations_total";
    header(
        out,
        ROTATIONS,
        "Certificate rotations the agent ran (rotate-before-days), by result.",
        "counter",
    );
    for (name, (ok, failed), _) in rows.clone() {
        let name = escape(name);
        let _ = writeln!(out, "{ROTATIONS}{{profile=\"{name}\",result=\"ok\"}} {ok}");
        let _ = writeln!(
            out,
            "{ROTATIONS}{{profile=\"{name}\",result=\"failed\"}} {failed}"
        );
    }
    const NOT_AFTER: &str = "suitekey_agent_certificate_not_after_seconds";
    header(
        out,
        NOT_AFTER,
        "When the profile's certificate (found on the token by its certificate id) expires, in Unix seconds.",
        "gauge",
    );
    for (name, _, not_after) in rows {
        let secs = not_after.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(secs) = secs {
            let _ = writeln!(
                out,
                "{NOT_AFTER}{{profile=\"{}\"}} {}",
                escape(name),
                secs.as_secs()
            );
        }
    }
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

    #[test]
    fn rotations_are_rendered_by_result_with_the_not_after_time() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let mut text = String::new();
        render_rotations(
            &mut text,
            [("prod", (1, 2), Some(at)), ("dev", (0, 0), None)].into_iter(),
        );
        for line in [
            "# TYPE suitekey_agent_rotations_total counter\n",
            "suitekey_agent_rotations_total{profile=\"prod\",result=\"ok\"} 1\n",
            "suitekey_agent_rotations_total{profile=\"prod\",result=\"failed\"} 2\n",
            "suitekey_agent_rotations_total{profile=\"dev\",result=\"ok\"} 0\n",
            "# TYPE suitekey_agent_certificate_not_after_seconds gauge\n",
            "suitekey_agent_certificate_not_after_seconds{profile=\"prod\"} 1800000000\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(
            !text.contains("not_after_seconds{profile=\"dev\"}"),
            "{text}"
        );
    }

    #[test]
    fn connection_counters_are_rendered_by_reason() {
        let m = ConnectionMetrics::default();
        m.refused(Refusal::ProcessLimit);
        m.refused(Refusal::ProcessLimit);
        m.refused(Refusal::Uid);
        m.timed_out(Timeout::Idle);
        let mut text = String::new();
        render_connections(&mut text, &m, 7);
        for line in [
            "suitekey_agent_connections_open 7\n",
            "suitekey_agent_connections_refused_total{reason=\"agent_limit\"} 0\n",
            "suitekey_agent_connections_refused_total{reason=\"process_limit\"} 2\n",
            "suitekey_agent_connections_refused_total{reason=\"uid\"} 1\n",
            "suitekey_agent_connections_timed_out_total{timeout=\"header\"} 0\n",
            "suitekey_agent_connections_timed_out_total{timeout=\"idle\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }
}
