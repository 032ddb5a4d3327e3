//! Every certificate of the emulated account, registered at start or uploaded since, with its
//! mapping and its life. Nothing is ever removed: a revoked certificate stays listed (and can
//! never come back), as on NetSuite.

use std::time::SystemTime;

use super::mapping::InternalId;
use crate::emulator::rules::Registration;
use crate::netsuite::{CertificateId, ClientId};

/// The most active (neither revoked nor expired) certificates one integration record may
/// have (NetSuite 2026.1).
pub const MAX_ACTIVE: usize = 5;

/// A certificate as the API shows it: its registration and the ids NetSuite would give its
/// mapping and its integration record.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The certificate, its mapping and its life.
    pub registration: &'a Registration,
    /// The M2M mapping's id (`entity_role_id`): its position in the account, from 1.
    pub mapping_id: InternalId,
    /// The integration record's id (`application_id`): the client's position, from 1.
    pub application_id: InternalId,
}

/// The account's certificates, in the order they were registered or uploaded.
#[derive(Debug, Default)]
pub struct Store {
    registrations: Vec<Registration>,
    /// Client ids in order of first appearance (their application ids).
    clients: Vec<ClientId>,
}

impl Store {
    /// The certificates of the `--register` specs. A permission belongs to the role, so each
    /// registration's mapping gets `manage_certificates` when any spec of its role grants it.
    pub fn new(mut registrations: Vec<Registration>) -> Store {
        let managing: Vec<InternalId> = registrations
            .iter()
            .filter(|r| r.mapping.manage_certificates)
            .map(|r| r.mapping.role)
            .collect();
        for reg in &mut registrations {
            reg.mapping.manage_certificates = managing.contains(&reg.mapping.role);
        }
        let mut store = Store::default();
        for reg in registrations {
            store.add(reg);
        }
        store
    }

    /// Every certificate, revoked ones included, for the token endpoint's rules.
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// Whether the role has "Manage own OAuth 2.0 Client Credentials certificates".
    pub fn role_may_manage(&self, role: InternalId) -> bool {
        self.registrations
            .iter()
            .any(|r| r.mapping.role == role && r.mapping.manage_certificates)
    }

    /// The certificate with this id, of any client.
    pub fn find(&self, id: &CertificateId) -> Option<Entry<'_>> {
        self.entries()
            .find(|e| e.registration.certificate_id == *id)
    }

    /// Every certificate with its ids, in order.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.registrations
            .iter()
            .zip(1..)
            .map(|(registration, position)| Entry {
                registration,
                mapping_id: InternalId::from(position),
                application_id: self.application_id(&registration.client_id),
            })
    }

    /// The client's certificates, in order.
    pub fn of_client<'a>(&'a self, client: &'a ClientId) -> impl Iterator<Item = Entry<'a>> {
        self.entries()
            .filter(move |e| e.registration.client_id == *client)
    }

    /// The client's active certificates at `now`: neither revoked nor expired.
    pub fn active<'a>(
        &'a self,
        client: &'a ClientId,
        now: SystemTime,
    ) -> impl Iterator<Item = &'a Registration> {
        self.of_client(client)
            .map(|e| e.registration)
            .filter(move |r| r.lifecycle.revoked.is_none() && now <= r.valid_until)
    }

    /// Adds a certificate (its id must be new: the caller checks) and returns its entry.
    pub fn add(&mut self, registration: Registration) -> Entry<'_> {
        if !self.clients.contains(&registration.client_id) {
            self.clients.push(registration.client_id.clone());
        }
        self.registrations.push(registration);
        let position = self.registrations.len();
        let registration = &self.registrations[position - 1];
        Entry {
            registration,
            mapping_id: InternalId::from(position as i64),
            application_id: self.application_id(&registration.client_id),
        }
    }

    /// Marks the client's certificate `id` revoked at `now`; `Err` says why it cannot be.
    pub fn revoke(
        &mut self,
        client: &ClientId,
        id: &CertificateId,
        now: SystemTime,
    ) -> Result<(), NotRevoked> {
        let reg = self
            .registrations
            .iter_mut()
            .find(|r| r.client_id == *client && r.certificate_id == *id)
            .ok_or(NotRevoked::Unknown)?;
        if let Some(at) = reg.lifecycle.revoked {
            return Err(NotRevoked::Already(at));
        }
        reg.lifecycle.revoked = Some(now);
        Ok(())
    }

    fn application_id(&self, client: &ClientId) -> InternalId {
        let position = self.clients.iter().position(|c| c == client).unwrap_or(0);
        InternalId::from(position as i64 + 1)
    }
}

/// Why a certificate was not revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRevoked {
    /// The client has no certificate with this id.
    Unknown,
    /// It was revoked already, at this time.
    Already(SystemTime),
}
