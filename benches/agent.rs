//! Load generator for a running `suitekey agent`: cached-token requests per second and p50/p99
//! latency over the Unix socket with 1, 8 and 64 concurrent keep-alive clients, then the agent's
//! memory. Driven by `scripts/bench.sh`, which starts the agent and warms its cache.
//!
//! Env: SUITEKEY_BENCH_SOCK (socket), SUITEKEY_BENCH_PROFILE (profile, default `bench`),
//! SUITEKEY_BENCH_PID (agent PID, for RSS), SUITEKEY_BENCH_SECS (per level, default 5).
//!
//! With SUITEKEY_BENCH_IDLE=N, one more level: 8 clients while another process (this program
//! again) holds N idle connections; the agent's refusals of that process are printed too.
//!
//! With SUITEKEY_BENCH_SOAK_SECS set it soaks instead (`scripts/soak.sh`):
//! SUITEKEY_BENCH_CLIENTS (default 64) clients for that long, every answer checked (HTTP 200,
//! JSON, `expires_at` after the moment it arrived, `expires_in` ≥ 1), the agent's VmRSS sampled
//! after a 10 s warm-up, every minute and at the end; prints `key=value` lines.

#[path = "agent/idle.rs"]
mod idle;
#[path = "agent/soak.rs"]
mod soak;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes --bench; nothing else is taken from argv.
    let socket = PathBuf::from(
        std::env::var_os("SUITEKEY_BENCH_SOCK")
            .ok_or("set SUITEKEY_BENCH_SOCK to the agent's socket")?,
    );
    if let Some(n) = env_number(idle::HOLD_ENV) {
        return idle::hold(&socket, n as usize);
    }
    let profile = std::env::var("SUITEKEY_BENCH_PROFILE").unwrap_or_else(|_| "bench".into());
    let secs = env_number("SUITEKEY_BENCH_SECS").unwrap_or(5);
    let request = format!("GET /v1/profiles/{profile}/token HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if let Some(soak_secs) = env_number("SUITEKEY_BENCH_SOAK_SECS") {
        let clients = env_number("SUITEKEY_BENCH_CLIENTS").unwrap_or(64) as usize;
        let pid = std::env::var("SUITEKEY_BENCH_PID").ok();
        return soak::run(&socket, &request, clients, soak_secs, pid.as_deref());
    }
    // Warm-up: the token is cached and connections work.
    run(&socket, &request, 8, Duration::from_secs(1))?;
    println!("clients\treq/s\tp50_us\tp99_us\trequests");
    for clients in [1, 8, 64] {
        let latencies = run(&socket, &request, clients, Duration::from_secs(secs))?;
        report(&clients.to_string(), latencies, secs);
    }
    if let Some(idle) = env_number("SUITEKEY_BENCH_IDLE") {
        let refused = "suitekey_agent_connections_refused_total{reason=\"process_limit\"}";
        let before = idle::metric(&socket, refused)?;
        let flood = idle::Flood::start(&socket, idle as usize)?;
        let latencies = run(&socket, &request, 8, Duration::from_secs(secs))?;
        let after = idle::metric(&socket, refused)?;
        drop(flood);
        report(&format!("8+{idle}idle"), latencies, secs);
        println!("agent refusals of the idle process (process_limit): {before} -> {after}");
    }
    if let Ok(pid) = std::env::var("SUITEKEY_BENCH_PID") {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        for line in status
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        {
            println!(
                "agent {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    Ok(())
}

/// Prints one level's line: `label`, requests per second, p50 and p99 in µs, requests.
fn report(label: &str, mut latencies: Vec<u32>, secs: u64) {
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "{label}\t{:.0}\t{}\t{}\t{}",
        latencies.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99),
        latencies.len()
    );
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// `clients` threads, each on one keep-alive connection, for `length`; every latency in µs.
fn run(
    socket: &Path,
    request: &str,
    clients: usize,
    length: Duration,
) -> Result<Vec<u32>, BoxError> {
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (start, socket, request) =
                (Arc::clone(&start), socket.to_owned(), request.to_owned());
            std::thread::spawn(move || -> Result<Vec<u32>, BoxError> {
                let mut stream = UnixStream::connect(&socket)?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut latencies = Vec::with_capacity(200_000);
                start.wait();
                let end = Instant::now() + length;
                while Instant::now() < end {
                    let sent = Instant::now();
                    stream.write_all(request.as_bytes())?;
                    read_response(&mut reader)?;
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(thread.join().map_err(|_| "client thread panicked")??);
    }
    Ok(all)
}

/// Reads one response with a Content-Length body; fails on anything but 200.
fn read_response(reader: &mut BufReader<UnixStream>) -> Result<(), BoxError> {
    let (status, _) = read_any_response(reader)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("agent answered {status:?}").into());
    }
    Ok(())
}

/// Reads one response with a Content-Length body: its status line and body.
pub(crate) fn read_any_response(
    reader: &mut BufReader<UnixStream>,
) -> Result<(String, Vec<u8>), BoxError> {
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if status.is_empty() {
        return Err("the agent closed the connection".into());
    }
    let mut line = String::new();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((status, body))
}
