//! The card's side of vpcd's protocol (vsmartcard's virtual reader driver for pcscd): vpcd
//! listens on a TCP port, the card connects; each message is a 2-byte big-endian length and its
//! bytes. A 1-byte message is a reader command (0 power off, 1 power on, 2 reset, 4 send the
//! ATR); a longer one is a command APDU, answered with the response APDU.

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use crate::SessionEnd;

/// What the reader needs of a card.
pub trait VirtualCard {
    /// The card's answer to reset.
    fn atr(&self) -> &[u8];
    /// Runs one command APDU; returns the response APDU (data and status word).
    fn execute(&mut self, apdu: &[u8]) -> Vec<u8>;
}

/// A connection to vpcd.
pub struct Reader {
    stream: TcpStream,
}

impl Reader {
    /// Connects to vpcd on 127.0.0.1:`port`, retrying every 50 ms until it listens (pcscd may
    /// start after the card, or restart).
    pub fn connect(port: u16) -> Self {
        loop {
            match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                Ok(stream) => {
                    // Our responses go out as one segment each.
                    let _ = stream.set_nodelay(true);
                    return Self { stream };
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Serves reader commands and APDUs until the card is powered off or reset, or the
    /// connection ends.
    pub fn serve(&mut self, card: &mut impl VirtualCard) -> SessionEnd {
        loop {
            let message = match self.receive() {
                Ok(m) => m,
                Err(e) => return SessionEnd::Disconnected(e),
            };
            let sent = match message.as_slice() {
                [0] | [2] => return SessionEnd::Reset,
                [1] => Ok(()),
                [4] => self.send(card.atr()),
                [other] => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown vpcd command {other}"),
                )),
                apdu => {
                    let response = card.execute(apdu);
                    self.send(&response)
                }
            };
            if let Err(e) = sent {
                return SessionEnd::Disconnected(e);
            }
        }
    }

    fn receive(&mut self) -> io::Result<Vec<u8>> {
        // vpcd writes the length and the APDU as two segments: without a quick ACK of the
        // first, Nagle on its side and delayed ACK on ours hold the second back ~40 ms.
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
        let mut len = [0u8; 2];
        self.stream.read_exact(&mut len)?;
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
        self.stream.read_exact(&mut message)?;
        if message.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty vpcd message",
            ));
        }
        Ok(message)
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let len = u16::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response too long"))?;
        let mut message = Vec::with_capacity(data.len() + 2);
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(data);
        self.stream.write_all(&message)
    }
}
