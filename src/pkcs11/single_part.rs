//! Single-part `C_Sign` after a `C_SignInit` the caller already made: the one `unsafe` call of
//! the crate (allowed where `mod single_part` is declared).
//!
//! cryptoki 0.12's `Session::sign` always calls `C_SignInit` itself, which leaves no room for
//! the context-specific login that `CKA_ALWAYS_AUTHENTICATE` keys need between init and sign.
//! Raw mechanisms (`CKM_ECDSA`, `CKM_RSA_PKCS_PSS`) are single-part only, so for them this one
//! call goes through cryptoki-sys directly. This file can go once cryptoki releases
//! `Session::sign_single` (a `C_Sign` without its own `C_SignInit`): then the signer calls that.

use std::path::Path;

use cryptoki::context::Function;
use cryptoki::error::{Error, Rv, RvError};
use cryptoki::session::Session;
use cryptoki_sys::{CK_FUNCTION_LIST, CK_ULONG};
use libloading::os::unix::{Library, RTLD_NOW};

/// dlopen's "only if already loaded" flag, which libloading does not name.
#[cfg(target_os = "linux")]
const RTLD_NOLOAD: std::os::raw::c_int = 0x4;
#[cfg(target_os = "macos")]
const RTLD_NOLOAD: std::os::raw::c_int = 0x10;

/// `C_Sign` from the module's own function list (the symbol itself need not be exported).
pub(super) fn sign(module: &Path, session: &Session, data: &[u8]) -> Result<Vec<u8>, Error> {
    // SAFETY: RTLD_NOLOAD only hands back the copy this process already loaded and
    // initialized (never a second, uninitialized copy, even if the file changed since);
    // the module's initializers have run, so opening it runs no foreign code.
    let lib = unsafe { Library::open(Some(module), RTLD_NOW | RTLD_NOLOAD) }
        .map_err(Error::LibraryLoading)?;
    // SAFETY: the symbols are looked up, not called, here.
    let lib = unsafe { cryptoki_sys::Pkcs11::from_library(lib) }.map_err(Error::LibraryLoading)?;
    let get_list = lib
        .C_GetFunctionList
        .as_ref()
        .map_err(|_| Error::MissingSymbol("C_GetFunctionList"))?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: the out-pointer is valid; the module fills it with its static function list.
    Rv::from(unsafe { get_list(&mut list) }).into_result(Function::GetFunctionList)?;
    // SAFETY: a successful C_GetFunctionList leaves a pointer to a list that lives as long
    // as the library, which `lib` keeps loaded for this whole function.
    let c_sign = unsafe { list.as_ref() }
        .and_then(|l| l.C_Sign)
        .ok_or(Error::Pkcs11(RvError::FunctionNotSupported, Function::Sign))?;
    let data_len = CK_ULONG::try_from(data.len())?;
    let mut len: CK_ULONG = 0;
    // SAFETY: `data` is valid for `data_len` bytes; a null output asks for the length; the
    // session handle is live for the borrow of `session`.
    let rv = unsafe {
        c_sign(
            session.handle(),
            data.as_ptr().cast_mut(),
            data_len,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    Rv::from(rv).into_result(Function::Sign)?;
    let mut out = vec![0u8; usize::try_from(len)?];
    // SAFETY: `out` is valid for `len` bytes, the length the module asked for.
    let rv = unsafe {
        c_sign(
            session.handle(),
            data.as_ptr().cast_mut(),
            data_len,
            out.as_mut_ptr(),
            &mut len,
        )
    };
    Rv::from(rv).into_result(Function::Sign)?;
    out.truncate(usize::try_from(len)?);
    Ok(out)
}
