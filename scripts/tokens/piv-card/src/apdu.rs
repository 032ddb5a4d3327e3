//! ISO 7816-4 transport around the applet: command chaining (CLA bit 0x10), responses longer
//! than Le handed out with 61xx and GET RESPONSE, and the card's ATR.

use iso7816::command::{Command, CommandView};
use iso7816::{Instruction, Status};

use crate::touch::Touch;
use crate::vpcd::VirtualCard;
use crate::Card;

/// The largest command (after chaining) and response the card handles: a certificate object.
const MAX_LEN: usize = 7609;

/// A YubiKey 5 NFC's ATR (its historical bytes spell "YubiKey"), so that OpenSC applies its
/// YubiKey quirks.
const ATR: [u8; 23] = [
    0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
];

/// The PIV AID (NIST SP 800-73-4 part 1, 2.2) up to the version: what the applet answers to.
const PIV_AID: [u8; 9] = [0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

/// A SELECT by a leading part of the PIV AID (ISO 7816-4 partial DF name, at least the 5-byte
/// RID), as Yubico's tools send it, rewritten to a SELECT of the PIV AID, which a YubiKey treats
/// alike but the applet does not know.
fn full_select(apdu: &[u8]) -> Option<Vec<u8>> {
    let [0x00, 0xa4, 0x04, 0x00, lc, rest @ ..] = apdu else {
        return None;
    };
    let aid = rest.get(..usize::from(*lc))?;
    if aid.len() < 5 || aid.len() >= PIV_AID.len() || !PIV_AID.starts_with(aid) {
        return None;
    }
    let mut select = vec![0x00, 0xa4, 0x04, 0x00, PIV_AID.len() as u8];
    select.extend_from_slice(&PIV_AID);
    select.push(0x00);
    Some(select)
}

/// The applet with its transport state.
pub struct ApduCard<'s, 'a> {
    card: Card<'s, 'a>,
    /// The chained command received so far.
    chain: Option<Box<Command<MAX_LEN>>>,
    /// The last response, and how much of it was sent.
    response: Vec<u8>,
    sent: usize,
    /// Whether to log APDUs on stderr (`PIV_CARD_TRACE=1`).
    trace: bool,
    /// Whether private-key operations wait for a touch (`PIV_CARD_TOUCH_FILE`).
    touch: Touch,
}

/// Logs a command and its response in hex, without the data of commands that carry PINs, PUKs
/// or keys (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, SET MANAGEMENT KEY, IMPORT).
fn trace(apdu: &[u8], response: &[u8]) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let secret = matches!(apdu.get(1), Some(0x20 | 0x24 | 0x2c | 0xff | 0xfe));
    let shown = if secret {
        &apdu[..apdu.len().min(4)]
    } else {
        apdu
    };
    let (data, sw) = response.split_at(response.len().saturating_sub(2));
    eprintln!(
        "piv-card: > {}{} < {} {}",
        hex(shown),
        if secret { " [data not shown]" } else { "" },
        hex(data),
        hex(sw)
    );
}

impl<'s, 'a> ApduCard<'s, 'a> {
    pub fn new(card: Card<'s, 'a>) -> Self {
        Self {
            card,
            chain: None,
            response: Vec::new(),
            sent: 0,
            trace: std::env::var_os("PIV_CARD_TRACE").is_some_and(|v| v == "1"),
            touch: Touch::from_env(),
        }
    }

    /// Runs one APDU: the response data (at most Le bytes) and status word.
    fn run(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Status> {
        let select = full_select(apdu);
        let apdu = select.as_deref().unwrap_or(apdu);
        let view = CommandView::try_from(apdu).map_err(|_| Status::WrongLength)?;
        if view.instruction() == Instruction::GetResponse {
            return Ok(self.next_part(view.expected()));
        }
        self.response.clear();
        self.sent = 0;
        if view.class().chain().not_the_last() {
            match &mut self.chain {
                Some(chain) => chain
                    .extend_from_command_view(view)
                    .map_err(|_| Status::WrongLength)?,
                None => {
                    let command = view.to_owned().map_err(|_| Status::WrongLength)?;
                    self.chain = Some(Box::new(command));
                }
            }
            return Ok(<[u8; 2]>::from(Status::Success).to_vec());
        }
        if !self.touch.allows(u8::from(view.instruction()), view.p2) {
            self.chain = None;
            return Err(Status::SecurityStatusNotSatisfied);
        }
        let mut reply = Box::new(heapless::Vec::<u8, MAX_LEN>::new());
        let result = match self.chain.take() {
            Some(mut chain) => {
                chain
                    .extend_from_command_view(view)
                    .map_err(|_| Status::WrongLength)?;
                self.card.respond(chain.as_view(), reply.as_mut_view())
            }
            None => self.card.respond(view, reply.as_mut_view()),
        };
        result?;
        self.response.extend_from_slice(&reply);
        Ok(self.next_part(view.expected()))
    }

    /// The next `le` bytes of the response (256 when Le is absent or 0).
    fn next_part(&mut self, le: usize) -> Vec<u8> {
        let le = if le == 0 { 256 } else { le };
        let rest = &self.response[self.sent.min(self.response.len())..];
        let n = le.min(rest.len());
        let mut out = rest[..n].to_vec();
        self.sent += n;
        let left = self.response.len().saturating_sub(self.sent);
        let status = if left == 0 {
            Status::Success
        } else {
            Status::MoreAvailable(u8::try_from(left).unwrap_or(0))
        };
        out.extend_from_slice(&<[u8; 2]>::from(status));
        out
    }
}

impl VirtualCard for ApduCard<'_, '_> {
    fn atr(&self) -> &[u8] {
        &ATR
    }

    fn execute(&mut self, apdu: &[u8]) -> Vec<u8> {
        let response = match self.run(apdu) {
            Ok(response) => response,
            Err(status) => {
                self.chain = None;
                <[u8; 2]>::from(status).to_vec()
            }
        };
        if self.trace {
            trace(apdu, &response);
        }
        response
    }
}
