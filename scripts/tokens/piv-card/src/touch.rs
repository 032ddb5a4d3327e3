//! A test knob: signatures that wait for a touch, as on a YubiKey whose key has touch policy
//! "always". With `PIV_CARD_TOUCH_FILE=PATH` in the card's environment, every private-key
//! operation (GENERAL AUTHENTICATE with a key slot, not the management key) waits until the
//! file PATH exists, removes it (one touch, one operation) and goes on; after 15 s without it
//! (a YubiKey's own limit) the card refuses the operation with 6982, security status not
//! satisfied. Without the variable nothing waits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long an operation waits for its touch, as a YubiKey does.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the file is looked for.
const POLL: Duration = Duration::from_millis(20);

/// GENERAL AUTHENTICATE's instruction byte, and the management key's reference (P2), which
/// authenticates the administrator rather than using a private key.
const GENERAL_AUTHENTICATE: u8 = 0x87;
const MANAGEMENT_KEY: u8 = 0x9b;

/// Where touches come from, if signatures wait for them.
pub struct Touch {
    file: Option<PathBuf>,
}

impl Touch {
    /// The knob as the environment sets it.
    pub fn from_env() -> Touch {
        Touch {
            file: std::env::var_os("PIV_CARD_TOUCH_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Whether the command (instruction `ins`, key reference `p2`) may run: at once without the
    /// knob or for other commands; else once touched, within the timeout.
    pub fn allows(&self, ins: u8, p2: u8) -> bool {
        let Some(file) = &self.file else {
            return true;
        };
        if ins != GENERAL_AUTHENTICATE || p2 == MANAGEMENT_KEY {
            return true;
        }
        eprintln!("piv-card: waiting for a touch ({})", file.display());
        let start = Instant::now();
        while start.elapsed() < TOUCH_TIMEOUT {
            if std::fs::remove_file(file).is_ok() {
                eprintln!("piv-card: touched");
                return true;
            }
            std::thread::sleep(POLL);
        }
        eprintln!("piv-card: no touch within {} s", TOUCH_TIMEOUT.as_secs());
        false
    }
}
