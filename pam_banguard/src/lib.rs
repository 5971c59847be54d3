//! pam_banguard.so: refuses hosts that brute-force passwords.
//!
//! A thin shell around the `banguard` core: it reads the PAM items, asks
//! the core, maps the answer to a PAM code, and never lets a panic or a
//! store error cross into the host process. See doc/pam_banguard.md.
//!
//! * `hooks`: what each entry point does, and the one error → code map.
//! * `options`: the arguments on the stack line.
//! * `runfiles`: the sync trigger and the error-log rate limit.
//! * `ffi`: the exported `pam_sm_*` functions and the only `unsafe`.
#![deny(unsafe_code)]

mod ffi;
mod hooks;
mod options;
mod runfiles;

use hooks::Hook;
use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};
use std::ffi::CStr;

/// The module; the session and password hooks keep pam-bindings' default,
/// PAM_IGNORE.
pub struct PamBanguard;

impl PamHooks for PamBanguard {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::run(pamh, &args, Hook::Authenticate, flags)
    }

    // libpam calls only authenticate and setcred for an `auth` line, so a
    // single line gives its success back here.
    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::run(pamh, &args, Hook::Setcred, flags)
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        hooks::run(pamh, &args, Hook::Account, flags)
    }
}
