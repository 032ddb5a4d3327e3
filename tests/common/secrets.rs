//! Looking for secrets where they must not be: output streams, logs, HTTP bodies, argv and a
//! process's memory. A failure names the place and the secret's kind, length and position,
//! never the secret itself (the test's own output must not leak it either).

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::FileExt as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// Whether a secret is a PIN (never anywhere) or an access token (allowed where a command's
/// job is to hand it out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A token PIN, in one of its encodings.
    Pin,
    /// An access token the emulator issued.
    AccessToken,
}

/// The secrets a test looks for, each with a description that is safe to print.
#[derive(Default)]
pub struct Secrets {
    items: Vec<(Kind, String, Vec<u8>)>,
}

impl Secrets {
    /// Adds a PIN in every form it could leak in: as is, hex in both cases, base64 and
    /// base64url (unpadded, so that it is found inside longer text too).
    pub fn add_pin(&mut self, name: &str, pin: &str) {
        let bytes = pin.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for (form, value) in [
            ("as is", pin.to_owned()),
            ("hex", hex.clone()),
            ("HEX", hex.to_uppercase()),
            ("base64", STANDARD_NO_PAD.encode(bytes)),
            ("base64url", URL_SAFE_NO_PAD.encode(bytes)),
        ] {
            self.items
                .push((Kind::Pin, format!("{name} ({form})"), value.into_bytes()));
        }
    }

    /// Adds an access token; false when it is already known.
    pub fn add_token(&mut self, token: &str) -> bool {
        assert!(
            token.len() >= 32,
            "an access token of {} bytes",
            token.len()
        );
        if self.items.iter().any(|(_, _, v)| v == token.as_bytes()) {
            return false;
        }
        let n = self.tokens() + 1;
        self.items.push((
            Kind::AccessToken,
            format!("access token #{n}"),
            token.as_bytes().to_vec(),
        ));
        true
    }

    /// How many distinct access tokens are known.
    pub fn tokens(&self) -> usize {
        self.items
            .iter()
            .filter(|(k, _, _)| *k == Kind::AccessToken)
            .count()
    }

    /// Asserts that no secret appears in `text`, which `place` describes ("`token --format
    /// json` stderr").
    pub fn assert_absent(&self, place: &str, text: &[u8]) {
        self.assert_absent_of(place, text, &[Kind::Pin, Kind::AccessToken]);
    }

    /// Asserts that no PIN appears in `text` (where access tokens belong, as on `token`'s
    /// stdout).
    pub fn assert_no_pin(&self, place: &str, text: &[u8]) {
        self.assert_absent_of(place, text, &[Kind::Pin]);
    }

    fn assert_absent_of(&self, place: &str, text: &[u8], kinds: &[Kind]) {
        for (kind, what, value) in &self.items {
            if !kinds.contains(kind) {
                continue;
            }
            if let Some(at) = find(text, value) {
                panic!(
                    "{place}: holds {what} ({} bytes) at byte {at} of {}",
                    value.len(),
                    text.len()
                );
            }
        }
    }
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    count_or_find(haystack, needle, true).1
}

/// How often `needle` occurs in `haystack` (overlaps counted).
pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    count_or_find(haystack, needle, false).0
}

fn count_or_find(haystack: &[u8], needle: &[u8], first: bool) -> (usize, Option<usize>) {
    let (mut n, mut at) = (0, None);
    if needle.is_empty() || haystack.len() < needle.len() {
        return (0, None);
    }
    let last = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last {
        // Jump to the next candidate first byte (the fast path in a debug build).
        match haystack[i..=last].iter().position(|b| *b == needle[0]) {
            None => break,
            Some(skip) => i += skip,
        }
        if &haystack[i..i + needle.len()] == needle {
            n += 1;
            at.get_or_insert(i);
            if first {
                break;
            }
        }
        i += 1;
    }
    (n, at)
}

/// What a scan of a process's memory saw.
#[derive(Debug, Default)]
pub struct MemoryScan {
    /// Occurrences of each needle, in the order given.
    pub counts: Vec<usize>,
    /// Bytes read.
    pub bytes: u64,
}

/// Counts each of `needles` in every readable mapping of process `pid` (through
/// `/proc/PID/maps` and `/proc/PID/mem`; root may read a non-dumpable process's memory).
/// Mappings that cannot be read (`[vvar]`, pages gone meanwhile) are skipped.
pub fn scan_memory(pid: u32, needles: &[&[u8]]) -> MemoryScan {
    let maps = File::open(format!("/proc/{pid}/maps")).expect("read /proc/PID/maps");
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (as root)");
    let mut scan = MemoryScan {
        counts: vec![0; needles.len()],
        bytes: 0,
    };
    for line in BufReader::new(maps).lines() {
        let line = line.expect("maps line");
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Some((lo, hi)), false) = (range.split_once('-'), !perms.starts_with('r')) else {
            continue;
        };
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).expect("address"),
            u64::from_str_radix(hi, 16).expect("address"),
        );
        let mut data = vec![0u8; (hi - lo) as usize];
        if mem.read_exact_at(&mut data, lo).is_err() {
            continue;
        }
        scan.bytes += data.len() as u64;
        for (n, needle) in scan.counts.iter_mut().zip(needles) {
            *n += count(&data, needle);
        }
    }
    scan
}
