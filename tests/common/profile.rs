//! One NetSuite profile as the tests write it: as `suitekey`'s profile flags, as a section of a
//! config file, and registered with the emulator.

use std::path::{Path, PathBuf};

/// The client id (integration record) the tests' profiles use and their emulators register.
pub const CLIENT: &str = "161c761646ff925cafb93a8de1b5a06be9be365f994d446c62c02e53dae488cf";
/// The NetSuite account id the tests' profiles use.
pub const ACCOUNT: &str = "1234567";

/// A profile: a key URI and the claims that go with it.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The key URI.
    pub key: String,
    /// `--client-id`.
    pub client: String,
    /// `--certificate-id`.
    pub kid: String,
    /// `--account`.
    pub account: String,
    /// `--token-url`, when given.
    pub token_url: Option<String>,
    /// More lines for the config section (`scope = […]`, `timeout = 1`, …).
    pub extra: String,
}

impl Profile {
    /// The key `key` with certificate id `kid`, for [`CLIENT`] on [`ACCOUNT`].
    pub fn new(key: impl Into<String>, kid: impl Into<String>) -> Profile {
        Profile {
            key: key.into(),
            client: CLIENT.to_owned(),
            kid: kid.into(),
            account: ACCOUNT.to_owned(),
            token_url: None,
            extra: String::new(),
        }
    }

    /// The same with another client id.
    pub fn client(mut self, client: &str) -> Profile {
        client.clone_into(&mut self.client);
        self
    }

    /// The same on another account.
    pub fn account(mut self, account: &str) -> Profile {
        account.clone_into(&mut self.account);
        self
    }

    /// The same with a token URL.
    pub fn token_url(mut self, url: &str) -> Profile {
        self.token_url = Some(url.to_owned());
        self
    }

    /// The same with more lines in its config section.
    pub fn with(mut self, lines: &str) -> Profile {
        self.extra.push_str(lines);
        self
    }

    /// `--key … --client-id … --certificate-id … --account …`, and `--token-url …` when set.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--key".to_owned(),
            self.key.clone(),
            "--client-id".to_owned(),
            self.client.clone(),
            "--certificate-id".to_owned(),
            self.kid.clone(),
            "--account".to_owned(),
            self.account.clone(),
        ];
        if let Some(url) = &self.token_url {
            flags.extend(["--token-url".to_owned(), url.clone()]);
        }
        flags
    }

    /// Its `[profiles.NAME]` section of a config file.
    pub fn section(&self, name: &str) -> String {
        let Profile {
            key,
            client,
            kid,
            account,
            ..
        } = self;
        let mut text = format!(
            "[profiles.{name}]\nkey = \"{key}\"\nclient-id = \"{client}\"\ncertificate-id = \"{kid}\"\naccount = \"{account}\"\n"
        );
        if let Some(url) = &self.token_url {
            text.push_str(&format!("token-url = \"{url}\"\n"));
        }
        text.push_str(&self.extra);
        text
    }
}

/// Writes a config file at `path` with these named profiles; returns the path.
pub fn write_config(path: &Path, profiles: &[(&str, &Profile)]) -> PathBuf {
    let text: Vec<String> = profiles.iter().map(|(n, p)| p.section(n)).collect();
    std::fs::write(path, text.join("\n")).expect("write the config file");
    path.to_owned()
}

/// What ends a `--register` spec to map its certificate to role 3 and entity -5 and give the
/// role the permission the certificate API needs.
pub const MANAGE_CERTIFICATES: &str = ",role=3,entity=-5,permissions=manage-certificates";

/// The emulator's `--register` spec for [`CLIENT`] on [`ACCOUNT`] with the certificate in `pem`.
pub fn registration(pem: &Path) -> String {
    registration_for(CLIENT, pem)
}

/// The emulator's `--register` spec for `client` on [`ACCOUNT`] with the certificate in `pem`.
pub fn registration_for(client: &str, pem: &Path) -> String {
    format!(
        "client-id={client},cert={},account={ACCOUNT}",
        pem.display()
    )
}
