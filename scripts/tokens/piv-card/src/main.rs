//! A virtual PIV card for suitekey's tests: Nitrokey's `piv-authenticator` applet on a software
//! Trussed platform whose storage is two files in the card's state directory, plugged into
//! pcscd's vpcd reader driver over TCP.
//!
//! Usage: `piv-card --state DIR --port PORT` (vpcd on 127.0.0.1:PORT). The card keeps
//! reconnecting while vpcd is away (pcscd restarted) and exits on SIGTERM. A power-off or reset
//! from the reader drops the applet's volatile state (PIN verified, management key
//! authenticated), as on a real card; keys, objects, PINs and counters stay in DIR.
//!
//! A TEST DEVICE ONLY: the private keys are in DIR, readable by whoever can read DIR.

mod apdu;
mod dispatch;
mod touch;
mod vpcd;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use piv_authenticator::{Authenticator, Options};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng as _;
use trussed::pipe::{ServiceEndpoint, TrussedChannel};
use trussed::types::CoreContext;
use trussed::virt::{StorageConfig, Store, StoreConfig, UserInterface};
use trussed::{ClientImplementation, Service};

/// What ended a session of the applet.
pub enum SessionEnd {
    /// The reader powered the card off or reset it: start a fresh applet on the same storage.
    Reset,
    /// The connection to vpcd is gone.
    Disconnected(std::io::Error),
}

/// A Trussed platform with OS entropy (trussed's own virtual platform has a fixed seed) and the
/// card's storage.
struct CardPlatform<'a> {
    rng: ChaCha8Rng,
    store: Store<'a>,
    ui: UserInterface,
}

impl<'a> trussed::platform::Platform for CardPlatform<'a> {
    type R = ChaCha8Rng;
    type S = Store<'a>;
    type UI = UserInterface;

    fn rng(&mut self) -> &mut Self::R {
        &mut self.rng
    }

    fn store(&self) -> Self::S {
        self.store
    }

    fn user_interface(&mut self) -> &mut Self::UI {
        &mut self.ui
    }
}

type CardService<'a> = Service<CardPlatform<'a>, dispatch::Dispatch>;
type Endpoint<'a> = ServiceEndpoint<
    'a,
    dispatch::Backend,
    <dispatch::Dispatch as trussed::backend::Dispatch>::Context,
>;

/// Runs the service for each request as the applet makes it, in the applet's thread: no polling
/// thread, so an APDU costs what its crypto costs.
pub(crate) struct InlineSyscall<'s, 'a>(&'s RefCell<(CardService<'a>, [Endpoint<'a>; 1])>);

impl trussed::platform::Syscall for InlineSyscall<'_, '_> {
    fn syscall(&mut self) {
        let (service, endpoints) = &mut *self.0.borrow_mut();
        service.process(endpoints);
    }
}

/// The applet's client as the applet sees it.
pub(crate) type CardClient<'s, 'a> =
    ClientImplementation<'s, InlineSyscall<'s, 'a>, dispatch::Dispatch>;

/// The PIV applet.
pub(crate) type Card<'s, 'a> = Authenticator<CardClient<'s, 'a>>;

/// One power cycle of the card: mounts the storage, runs the applet until the reader resets or
/// powers off the card, or the connection ends.
fn session(state: &Path, reader: &mut vpcd::Reader) -> SessionEnd {
    let mut stores = StoreConfig {
        internal: StorageConfig::filesystem(state.join("internal.lfs")),
        external: StorageConfig::filesystem(state.join("external.lfs")),
        volatile: StorageConfig::ram(),
    };
    stores.with_store(|store| {
        let platform = CardPlatform {
            rng: ChaCha8Rng::from_entropy(),
            store,
            ui: UserInterface::new(),
        };
        let channel = TrussedChannel::new();
        let Some((requester, responder)) = channel.split() else {
            unreachable!("a new channel splits");
        };
        let id = littlefs2_core::path!("piv").into();
        let endpoint = ServiceEndpoint::new(responder, CoreContext::new(id), dispatch::BACKENDS);
        let service = Service::with_dispatch(platform, dispatch::Dispatch::new());
        let shared = RefCell::new((service, [endpoint]));
        let client = ClientImplementation::new(requester, InlineSyscall(&shared), None);
        let options = Options::new()
            .label(b"suitekey virtual PIV")
            .url(b"https://github.com/Nitrokey/piv-authenticator");
        let mut card = apdu::ApduCard::new(Authenticator::new(client, options));
        reader.serve(&mut card)
    })
}

fn run(state: &Path, port: u16) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(state) {
        eprintln!("piv-card: cannot create {}: {e}", state.display());
        return ExitCode::FAILURE;
    }
    loop {
        let mut reader = vpcd::Reader::connect(port);
        eprintln!("piv-card: inserted in vpcd's reader on 127.0.0.1:{port}");
        loop {
            match session(state, &mut reader) {
                SessionEnd::Reset => continue,
                SessionEnd::Disconnected(e) => {
                    eprintln!("piv-card: vpcd closed the connection ({e}); reconnecting");
                    break;
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (state, port) = match args.as_slice() {
        [s, state, p, port] if s == "--state" && p == "--port" => match port.parse::<u16>() {
            Ok(port) => (PathBuf::from(state), port),
            Err(_) => {
                eprintln!("piv-card: --port takes a TCP port number, not '{port}'");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: piv-card --state DIR --port VPCD_PORT");
            return ExitCode::from(2);
        }
    };
    run(&state, port)
}
