//! The Trussed backends the PIV applet needs: PIN handling (trussed-auth), chunked files, HPKE and
//! key wrapping (trussed-staging), software RSA (trussed-rsa-alloc), then Trussed's core.
//!
//! Adapted from the dispatch of piv-authenticator's own (unpublished) virtual runner.

use trussed::{
    backend::{Backend as _, BackendId},
    platform::Platform,
    serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl},
    service::ServiceResources,
    types::{Context, CoreContext},
};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::{
    api::{reply, request, Reply, Request},
    serde_extensions::Extension as TrussedExtension,
    types::{Bytes, Location},
    Error,
};
use trussed_hpke::HpkeExtension;
use trussed_rsa_alloc::SoftwareRsa;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// The backends, in the order Trussed tries them for a core request.
pub const BACKENDS: &[BackendId<Backend>] = &[
    BackendId::Custom(Backend::Staging),
    BackendId::Custom(Backend::Auth),
    BackendId::Custom(Backend::Rsa),
    BackendId::Core,
];

/// A custom backend.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Auth,
    Rsa,
    Staging,
}

/// An extension, by the number the client sends.
#[derive(Debug, Clone, Copy)]
pub enum Extension {
    Auth,
    Chunked,
    Hpke,
    WrapKeyToFile,
}

impl From<Extension> for u8 {
    fn from(extension: Extension) -> Self {
        match extension {
            Extension::Auth => 0,
            Extension::Chunked => 1,
            Extension::Hpke => 2,
            Extension::WrapKeyToFile => 3,
        }
    }
}

impl TryFrom<u8> for Extension {
    type Error = Error;

    fn try_from(id: u8) -> Result<Self, Self::Error> {
        match id {
            0 => Ok(Extension::Auth),
            1 => Ok(Extension::Chunked),
            2 => Ok(Extension::Hpke),
            3 => Ok(Extension::WrapKeyToFile),
            _ => Err(Error::InternalError),
        }
    }
}

/// The dispatcher: one instance of each stateful backend.
pub struct Dispatch {
    auth: AuthBackend,
    staging: StagingBackend,
}

/// Per-client state of the backends.
#[derive(Default)]
pub struct DispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

impl Dispatch {
    /// PINs are kept in the internal store, their keys derived with a fixed "hardware key" (a
    /// real device has a secret one; this test card has none to protect).
    pub fn new() -> Self {
        let mut hw_key = Bytes::new();
        let _ = hw_key.extend_from_slice(b"suitekey virtual PIV card");
        Self {
            auth: AuthBackend::with_hw_key(Location::Internal, hw_key, FilesystemLayout::V0),
            staging: StagingBackend::new(),
        }
    }
}

impl ExtensionDispatch for Dispatch {
    type BackendId = Backend;
    type Context = DispatchContext;
    type ExtensionId = Extension;

    fn core_request<P: Platform>(
        &mut self,
        backend: &Self::BackendId,
        ctx: &mut Context<Self::Context>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        match backend {
            Backend::Auth => {
                self.auth
                    .request(&mut ctx.core, &mut ctx.backends.auth, request, resources)
            }
            Backend::Staging => {
                self.staging
                    .request(&mut ctx.core, &mut ctx.backends.staging, request, resources)
            }
            Backend::Rsa => SoftwareRsa.request(&mut ctx.core, &mut (), request, resources),
        }
    }

    fn extension_request<P: Platform>(
        &mut self,
        backend: &Self::BackendId,
        extension: &Self::ExtensionId,
        ctx: &mut Context<Self::Context>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core = &mut ctx.core;
        match (backend, extension) {
            (Backend::Auth, Extension::Auth) => self.auth.extension_request_serialized(
                core,
                &mut ctx.backends.auth,
                request,
                resources,
            ),
            (Backend::Staging, Extension::Chunked) => staging::<ChunkedExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            (Backend::Staging, Extension::Hpke) => staging::<HpkeExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            (Backend::Staging, Extension::WrapKeyToFile) => staging::<WrapKeyToFileExtension, P>(
                &mut self.staging,
                core,
                &mut ctx.backends.staging,
                request,
                resources,
            ),
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

/// Runs a serialized request of extension `E` on the staging backend.
fn staging<E: TrussedExtension, P: Platform>(
    backend: &mut StagingBackend,
    core: &mut CoreContext,
    ctx: &mut StagingContext,
    request: &request::SerdeExtension,
    resources: &mut ServiceResources<P>,
) -> Result<reply::SerdeExtension, Error>
where
    StagingBackend: ExtensionImpl<E>,
{
    <StagingBackend as ExtensionImpl<E>>::extension_request_serialized(
        backend, core, ctx, request, resources,
    )
}

impl ExtensionId<AuthExtension> for Dispatch {
    type Id = Extension;
    const ID: Self::Id = Self::Id::Auth;
}

impl ExtensionId<ChunkedExtension> for Dispatch {
    type Id = Extension;
    const ID: Self::Id = Self::Id::Chunked;
}

impl ExtensionId<HpkeExtension> for Dispatch {
    type Id = Extension;
    const ID: Self::Id = Self::Id::Hpke;
}

impl ExtensionId<WrapKeyToFileExtension> for Dispatch {
    type Id = Extension;
    const ID: Self::Id = Self::Id::WrapKeyToFile;
}
