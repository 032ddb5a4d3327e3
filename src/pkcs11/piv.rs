//! PIV smart cards (YubiKeys and the like) behind the two PKCS#11 modules for them, Yubico's
//! ykcs11 and OpenSC: telling which one a token is reached through, the PIV slot a key id
//! names, and what each module needs to make objects (measured with ykcs11 2.2 and OpenSC
//! 0.23): ykcs11 makes keys and stores certificates only as the security officer, logged in
//! with the card's management key (see `creator`); OpenSC cannot make either.

use super::Error;
use super::token::Token;

/// Which PIV module a token is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PivModule {
    /// Yubico's ykcs11 (`libykcs11.so`).
    Ykcs11,
    /// OpenSC's PIV driver (`opensc-pkcs11.so`).
    OpenSc,
}

impl PivModule {
    /// The PIV module `token` is reached through, if it is one: ykcs11 by its library's
    /// manufacturer and description; OpenSC by its library and the token's manufacturer,
    /// `piv_II` (OpenSC serves other cards as well).
    pub(crate) fn of(token: &Token) -> Result<Option<PivModule>, Error> {
        let library = token.module().library()?;
        Ok(
            if library.manufacturer.starts_with("Yubico") && library.description.contains("PIV") {
                Some(PivModule::Ykcs11)
            } else if library.manufacturer.starts_with("OpenSC")
                && token.summary().manufacturer == "piv_II"
            {
                Some(PivModule::OpenSc)
            } else {
                None
            },
        )
    }

    /// Why this module cannot make keys or store certificates, if it cannot (OpenSC), with the
    /// tools that can.
    pub(crate) fn cannot_create(self) -> Option<&'static str> {
        match self {
            PivModule::Ykcs11 => None,
            PivModule::OpenSc => Some(OPENSC_CANNOT_CREATE),
        }
    }
}

/// Naming a token in the key URIs `list` prints.
impl Token {
    /// What names this token in a key URI for good: `(token=, serial=)`. The label, but for a
    /// PIV card through OpenSC, which labels the token after the first certificate's common
    /// name (so the label changes with the certificates): its serial number instead.
    pub fn stable_name(&self) -> (Option<String>, Option<String>) {
        let opensc_piv = matches!(PivModule::of(self), Ok(Some(PivModule::OpenSc)));
        if opensc_piv && !self.summary().serial.is_empty() {
            (None, Some(self.summary().serial.clone()))
        } else {
            (Some(self.label().to_owned()), None)
        }
    }
}

/// OpenSC's limit, and what to use instead.
const OPENSC_CANNOT_CREATE: &str = "OpenSC's PIV driver cannot make keys or store certificates on a PIV card through PKCS#11 (it answers C_GenerateKeyPair and C_CreateObject with 'not supported'): make the key and import its certificate with yubico-piv-tool (yubico-piv-tool -k -a generate -s 9a -A ECCP256 -o key.pem; yubico-piv-tool -k -a import-certificate -s 9a -i cert.pem) or ykman (ykman piv keys generate; ykman piv certificates import), or use Yubico's module, libykcs11.so, with --management-key-source";

/// What a YubiKey user is told when ykcs11 is asked to make an object without the management
/// key.
pub(crate) const NEEDS_MANAGEMENT_KEY: &str = "Yubico's ykcs11 makes keys and stores certificates on a PIV card only after a login with the card's management key: pass --management-key-source file:PATH (or env:NAME) naming where it is, in hex (48 digits for a 3DES key, the default before YubiKey firmware 5.7)";

/// A PIV key slot and the `CKA_ID` both modules give its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PivSlot {
    /// The key's `CKA_ID` (one byte).
    pub(crate) id: u8,
    /// The slot's number, e.g. `9a`.
    pub(crate) name: &'static str,
}

/// The four main slots, by key id: 01 = 9a, 02 = 9c, 03 = 9d, 04 = 9e. (Ids 05 to 18 name the
/// retired key-management slots 82 to 95.)
const SLOTS: [(u8, &str); 4] = [(0x01, "9a"), (0x02, "9c"), (0x03, "9d"), (0x04, "9e")];

/// The slots' names for the retired key-management slots 82 to 95 (ids 05 to 18).
const RETIRED: [&str; 20] = [
    "82", "83", "84", "85", "86", "87", "88", "89", "8a", "8b", "8c", "8d", "8e", "8f", "90", "91",
    "92", "93", "94", "95",
];

/// The PIV slot whose key has `CKA_ID` `id`, if any.
pub(crate) fn slot_of(id: &[u8]) -> Option<PivSlot> {
    let [id] = id else { return None };
    let name = SLOTS
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, name)| *name)
        .or_else(|| RETIRED.get(usize::from(id.checked_sub(0x05)?)).copied())?;
    Some(PivSlot { id: *id, name })
}

/// How a key URI picks a PIV slot, for refusals.
pub(crate) const SLOT_CHOICE: &str = "on a PIV card the key URI's id picks the slot: id=%01 (9a, PIV authentication: the PIN once per session, for unattended use), id=%02 (9c, digital signature: the PIN before every signature), id=%03 (9d, key management) or id=%04 (9e, card authentication: no PIN at all); ids %05 to %18 name the retired slots 82 to 95";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_name_the_piv_slots_as_both_modules_number_them() {
        let name = |id: &[u8]| slot_of(id).map(|s| s.name);
        assert_eq!(name(&[0x01]), Some("9a"));
        assert_eq!(name(&[0x02]), Some("9c"));
        assert_eq!(name(&[0x03]), Some("9d"));
        assert_eq!(name(&[0x04]), Some("9e"));
        assert_eq!(name(&[0x05]), Some("82"));
        assert_eq!(name(&[0x18]), Some("95"));
        for id in [&[0x00][..], &[0x19], &[0x9a], &[0x01, 0x02], &[]] {
            assert_eq!(slot_of(id), None, "{id:?}");
        }
    }
}
