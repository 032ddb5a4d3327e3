//! The soak mode of the load generator: many clients for minutes, every answer checked, the
//! agent's RSS sampled. Prints `key=value` lines for `scripts/soak.sh`.

use std::collections::HashSet;
use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{BoxError, read_any_response};

/// Load before the first RSS sample, so that buffers and connections exist.
const WARM_UP: Duration = Duration::from_secs(10);
/// First lines of failures shown, so that a broken run says why.
const SHOWN_FAILURES: u64 = 5;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    expired: AtomicU64,
    min_expires_in: AtomicU64,
    tokens: Mutex<HashSet<String>>,
}

impl Tally {
    fn fail(&self, why: &str) {
        if self.failures.fetch_add(1, Relaxed) < SHOWN_FAILURES {
            eprintln!("soak: failure: {why}");
        }
    }
}

/// Runs `clients` clients for `secs` seconds after the warm-up.
pub fn run(
    socket: &Path,
    request: &str,
    clients: usize,
    secs: u64,
    pid: Option<&str>,
) -> Result<(), BoxError> {
    let tally = Arc::new(Tally {
        min_expires_in: AtomicU64::new(u64::MAX),
        ..Tally::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
            let (socket, request) = (socket.to_owned(), request.to_owned());
            std::thread::spawn(move || client(&socket, &request, &tally, &stop))
        })
        .collect();
    std::thread::sleep(WARM_UP);
    let rss = |when: &str| -> Result<u64, BoxError> {
        let kib = pid.map(vm_rss_kib).transpose()?.unwrap_or(0);
        println!("rss_kib[{when}]={kib}");
        std::io::stdout().flush()?;
        Ok(kib)
    };
    let start = rss("start")?;
    let mut max = start;
    let began = Instant::now();
    let end = began + Duration::from_secs(secs);
    let mut minute = 1;
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(250)));
        if began.elapsed() >= Duration::from_secs(60 * minute) && Instant::now() < end {
            max = max.max(rss(&format!("minute {minute}"))?);
            minute += 1;
        }
    }
    stop.store(true, Relaxed);
    for thread in threads {
        thread.join().map_err(|_| "client thread panicked")?;
    }
    let last = rss("end")?;
    let tokens = tally.tokens.lock().map_err(|_| "poisoned")?.len();
    println!("clients={clients}");
    println!("seconds={secs}");
    println!("requests={}", tally.requests.load(Relaxed));
    println!("failures={}", tally.failures.load(Relaxed));
    println!("expired={}", tally.expired.load(Relaxed));
    println!("min_expires_in={}", tally.min_expires_in.load(Relaxed));
    println!("distinct_tokens={tokens}");
    println!("rss_start_kib={start}");
    println!("rss_end_kib={last}");
    println!("rss_max_kib={}", max.max(last));
    Ok(())
}

/// One keep-alive client until `stop`; reconnects after a broken connection.
fn client(socket: &Path, request: &str, tally: &Tally, stop: &AtomicBool) {
    let mut seen = HashSet::new();
    while !stop.load(Relaxed) {
        let stream = match UnixStream::connect(socket) {
            Ok(stream) => stream,
            Err(e) => {
                tally.fail(&format!("connect: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = session(stream, request, tally, stop, &mut seen) {
            tally.fail(&e.to_string());
        }
    }
    if let Ok(mut all) = tally.tokens.lock() {
        all.extend(seen);
    }
}

fn session(
    mut stream: UnixStream,
    request: &str,
    tally: &Tally,
    stop: &AtomicBool,
    seen: &mut HashSet<String>,
) -> Result<(), BoxError> {
    let mut reader = BufReader::new(stream.try_clone()?);
    while !stop.load(Relaxed) {
        stream.write_all(request.as_bytes())?;
        let (status, body) = read_any_response(&mut reader)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        tally.requests.fetch_add(1, Relaxed);
        if !status.starts_with("HTTP/1.1 200") {
            tally.fail(&format!("agent answered {}", status.trim_end()));
            continue;
        }
        check(&body, now, tally, seen);
    }
    Ok(())
}

/// Checks one 200 answer received at `now` (Unix seconds).
fn check(body: &[u8], now: u64, tally: &Tally, seen: &mut HashSet<String>) {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => return tally.fail(&format!("not JSON: {e}")),
    };
    let (Some(token), Some(expires_at), Some(expires_in)) = (
        json["access_token"].as_str(),
        json["expires_at"].as_str().and_then(unix_seconds),
        json["expires_in"].as_u64(),
    ) else {
        return tally.fail("access_token, expires_at or expires_in missing or malformed");
    };
    tally.min_expires_in.fetch_min(expires_in, Relaxed);
    if expires_at <= now || expires_in < 1 {
        tally.expired.fetch_add(1, Relaxed);
    }
    if !seen.contains(token) {
        seen.insert(token.to_owned());
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what the agent writes) as Unix seconds.
fn unix_seconds(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn vm_rss_kib(pid: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
}
