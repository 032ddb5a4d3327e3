//! Reading a PIN from the terminal without echo, leaving the terminal as it was found even
//! when the user presses Ctrl-C at the prompt.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::sync::{Mutex, OnceLock, PoisonError};

use rustix::termios::{self, InputModes, LocalModes, OptionalActions, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use zeroize::Zeroizing;

/// The terminal settings to put back if a signal ends the process while a prompt is up.
static ACTIVE: Mutex<Option<(File, Termios)>> = Mutex::new(None);

/// Writes `prompt` on the controlling terminal and reads one line of at most `max` bytes with
/// echo off. Echo goes off *before* the prompt is shown, so a PIN typed or pasted the moment
/// the prompt appears is never echoed.
pub(super) fn read_secret_line(prompt: &str, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let saved = termios::tcgetattr(&tty)?;
    let mut silent = saved.clone();
    // Cooked mode whatever state the terminal was left in: line editing, Ctrl-C, CR as NL.
    silent.local_modes.remove(LocalModes::ECHO);
    silent
        .local_modes
        .insert(LocalModes::ECHONL | LocalModes::ICANON | LocalModes::ISIG);
    silent.input_modes.insert(InputModes::ICRNL);
    restore_on_signal()?;
    *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) =
        Some((tty.try_clone()?, saved.clone()));
    let line = termios::tcsetattr(&tty, OptionalActions::Now, &silent)
        .map_err(io::Error::from)
        .and_then(|()| write!(tty, "{prompt}"))
        .and_then(|()| tty.flush())
        .and_then(|()| read_line(&mut tty, max));
    let restored = termios::tcsetattr(&tty, OptionalActions::Now, &saved);
    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).take();
    let line = line?;
    restored?;
    Ok(line)
}

/// One line, byte by byte so nothing past its end is consumed. A longer line is an error, and
/// its rest is discarded rather than left for the shell to run.
fn read_line(tty: &mut File, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(max));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        if tty.read(&mut byte[..])? == 0 || matches!(byte[0], b'\n' | b'\r') {
            return Ok(line);
        }
        if line.len() == max {
            termios::tcflush(&*tty, termios::QueueSelector::IFlush)?;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the line is longer than {max} bytes"),
            ));
        }
        line.push(byte[0]);
    }
}

/// Installs, once per process, a handler thread for the signals that end a process from the
/// keyboard or the session: it puts the terminal back if a prompt is up, then lets the signal
/// take its default course. (Never unregistered: signal-hook would leave the signals ignored.)
fn restore_on_signal() -> io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])?;
    std::thread::Builder::new()
        .name("suitekey-tty-restore".into())
        .spawn(move || {
            for signal in signals.forever() {
                if let Some((tty, saved)) =
                    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).take()
                {
                    let _ = termios::tcsetattr(&tty, OptionalActions::Now, &saved);
                    let _ = writeln!(&tty);
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}
