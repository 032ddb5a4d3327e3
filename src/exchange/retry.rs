//! The retry policy: after which failures another attempt (with a fresh assertion) is made,
//! how long to wait first (exponential backoff with jitter, or the server's `Retry-After` up to
//! a limit), and when to stop.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::ExchangeError;
use super::options::ClientOptions;

/// What to do after a failed attempt.
pub(super) enum Next {
    Retry(Duration),
    Stop(ExchangeError),
}

/// Whether and when to try again after `err` on attempt `attempt` of `max`.
pub(super) fn next(options: &ClientOptions, err: ExchangeError, attempt: u32, max: u32) -> Next {
    if !err.is_retryable() || attempt >= max {
        return Next::Stop(err);
    }
    let asked = match &err {
        ExchangeError::Status(s) => s.retry_after,
        _ => None,
    };
    let wait = match asked {
        Some(wait) if wait > options.max_retry_after => {
            let ExchangeError::Status(last) = err else {
                return Next::Stop(err);
            };
            return Next::Stop(ExchangeError::RetryAfterTooLong {
                last,
                wait,
                limit: options.max_retry_after,
            });
        }
        Some(wait) => wait,
        None => backoff(options, attempt),
    };
    // Logged only once a retry is certain: a Retry-After past the limit ends the tries.
    tracing::info!(
        attempt,
        "token request failed, will retry: {}",
        first_line(&err)
    );
    Next::Retry(wait)
}

/// Exponential backoff with "equal jitter": half the doubled wait, plus a random part of the
/// other half, so that clients that failed together do not retry together.
pub(super) fn backoff(options: &ClientOptions, attempt: u32) -> Duration {
    let doubled = options
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let wait = doubled.min(options.max_backoff);
    let half = wait / 2;
    let mut random = [0u8; 8];
    // Without randomness the wait is merely less spread out; not worth failing for.
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    half + half.mul_f64(fraction)
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first line of an error's message, for a one-line log.
fn first_line(err: &dyn std::error::Error) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
