//! Reading a PIN from the terminal without echo, leaving the terminal as it was found even
//! when the user presses Ctrl-C at the prompt.
//!
//! A process that handles its signals itself (the agent: SIGHUP reloads, SIGTERM drains) says
//! so with [`leave_signals_to_caller`]: the prompt's handler then never ends the process, and a
//! SIGINT or SIGTERM at the prompt ends only the prompt (and every later one), so that the
//! caller can stop cleanly.

use std::fs::{File, OpenOptions};
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::termios::{self, InputModes, LocalModes, OptionalActions, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use zeroize::Zeroizing;

/// The terminal settings to put back if a signal ends the process while a prompt is up.
static ACTIVE: Mutex<Option<(File, Termios)>> = Mutex::new(None);

/// Set by [`leave_signals_to_caller`].
static CALLER_HANDLES_SIGNALS: AtomicBool = AtomicBool::new(false);

/// Set when SIGINT or SIGTERM came while the caller handles signals: no prompt reads any more.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Woken (one byte written, never read back) when [`CANCELLED`] is set, so that a prompt
/// blocked on the terminal returns.
fn cancel_pipe() -> io::Result<&'static (PipeReader, PipeWriter)> {
    static PIPE: OnceLock<(PipeReader, PipeWriter)> = OnceLock::new();
    if let Some(pipe) = PIPE.get() {
        return Ok(pipe);
    }
    let pipe = io::pipe()?;
    Ok(PIPE.get_or_init(|| pipe))
}

/// Declares that this process handles SIGINT, SIGTERM and SIGHUP itself (call it once its own
/// handlers are in place). From then on a prompt never ends the process: SIGINT or SIGTERM
/// at a prompt puts the terminal back and fails that prompt and every later one with
/// [`io::ErrorKind::Interrupted`], and SIGHUP is left to the caller, prompt or not.
pub fn leave_signals_to_caller() {
    CALLER_HANDLES_SIGNALS.store(true, Ordering::SeqCst);
}

/// Whether a SIGINT or SIGTERM ended the prompts (see [`leave_signals_to_caller`]). The caller's
/// own handler may not have run yet when the prompt returns, so the caller asks here too.
pub fn cancelled_by_signal() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "a signal to stop came while the PIN was asked for",
    )
}

/// Writes `prompt` on the controlling terminal and reads one line of at most `max` bytes with
/// echo off. Echo goes off *before* the prompt is shown, so a PIN typed or pasted the moment
/// the prompt appears is never echoed.
pub(super) fn read_secret_line(prompt: &str, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    if CANCELLED.load(Ordering::SeqCst) {
        return Err(interrupted());
    }
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
/// its rest is discarded rather than left for the shell to run; so is a line the input ended
/// in the middle of.
fn read_line(tty: &mut File, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(Vec::with_capacity(max));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        wait_for_input(tty)?;
        if tty.read(&mut byte[..])? == 0 {
            // The terminal hung up (or Ctrl-D): a PIN never confirmed with Enter is not sent.
            if line.is_empty() {
                return Ok(line);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the input ended before Enter was pressed",
            ));
        }
        if matches!(byte[0], b'\n' | b'\r') {
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

/// Blocks until the terminal has input (in canonical mode: a whole line, or its end) or the
/// prompt is cancelled.
fn wait_for_input(tty: &File) -> io::Result<()> {
    let (cancel, _) = cancel_pipe()?;
    loop {
        if CANCELLED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        let mut fds = [
            PollFd::new(tty, PollFlags::IN),
            PollFd::new(cancel, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) if fds[1].revents().is_empty() && !fds[0].revents().is_empty() => {
                return Ok(());
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Installs, once per process, a handler thread for the signals that end a process from the
/// keyboard or the session: it puts the terminal back if a prompt is up, then lets the signal
/// take its default course — unless the caller handles the signal itself
/// ([`leave_signals_to_caller`]; SIGQUIT always takes its course). (Never unregistered:
/// signal-hook would leave the signals ignored.)
fn restore_on_signal() -> io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let (_, wake) = cancel_pipe()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])?;
    std::thread::Builder::new()
        .name("suitekey-tty-restore".into())
        .spawn(move || {
            for signal in signals.forever() {
                let caller_handles =
                    CALLER_HANDLES_SIGNALS.load(Ordering::SeqCst) && signal != SIGQUIT;
                if caller_handles && signal == SIGHUP {
                    // A reload: the prompt stays up, echo off.
                    continue;
                }
                if let Some((tty, saved)) =
                    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner).take()
                {
                    let _ = termios::tcsetattr(&tty, OptionalActions::Now, &saved);
                    let _ = writeln!(&tty);
                }
                if caller_handles {
                    CANCELLED.store(true, Ordering::SeqCst);
                    let _ = (&*wake).write_all(b"x");
                } else {
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
            }
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}
