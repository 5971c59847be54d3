//! The only `unsafe` of the module: the C entry points and the few libpam
//! and libc calls pam-bindings 0.4 does not wrap.

#![allow(unsafe_code)]

use crate::PamBanguard;
use banguard::{AttemptId, Banguard};
use pam::constants::PamResultCode;
use pam::module::PamHandle;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};

// The six exported `pam_sm_*` functions; each wraps its hook in
// pam-bindings' own catch_unwind (a second line behind ours).
pam::pam_hooks!(PamBanguard);

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_fail_delay(pamh: *mut PamHandle, usec: std::ffi::c_uint) -> c_int;
}

/// Text for C: interior NULs (which cannot come from us, but may from a
/// path or PAM item we quote) become '?'.
fn c_text(msg: &str) -> CString {
    CString::new(msg.replace('\0', "?")).unwrap_or_default()
}

/// Logs through `pam_syslog`, which prefixes "pam_banguard(service:type):"
/// and uses LOG_AUTHPRIV.
pub fn syslog(pamh: &PamHandle, level: c_int, msg: &str) {
    let msg = c_text(msg);
    // SAFETY: pamh is the live handle libpam passed to this hook; the format
    // is a constant "%s" with exactly one NUL-terminated argument.
    unsafe { pam_syslog(pamh, level, c"%s".as_ptr(), msg.as_ptr()) }
}

/// Logs without a handle (the panic hook), as pam_syslog would.
pub fn syslog_global(level: c_int, msg: &str) {
    banguard::sys::syslog(libc::LOG_AUTHPRIV | level, msg);
}

/// Asks libpam to wait at least `seconds` before it reports a failed
/// authentication (the longest delay any module asked for wins; nothing
/// waits when the stack succeeds).
pub fn fail_delay(pamh: &mut PamHandle, seconds: i64) {
    let usec = seconds.clamp(0, i64::from(u32::MAX / 1_000_000)) as std::ffi::c_uint * 1_000_000;
    // SAFETY: pamh is the live handle libpam passed to this hook; the call
    // only records the delay in it.
    unsafe { pam_fail_delay(pamh, usec) };
}

/// A variable of the PAM environment (sshd puts SSH_CONNECTION there).
pub fn getenv(pamh: &mut PamHandle, name: &CStr) -> Option<String> {
    // SAFETY: pamh is the live handle; name is NUL-terminated. The result is
    // NULL or a string owned by libpam that stays valid until the next
    // change of the PAM environment, and we copy it at once.
    let value = unsafe { pam_getenv(pamh, name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, owned by libpam (see above).
    Some(unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned())
}

/// What this module remembers on a PAM handle between hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleState {
    /// The attempt the last `pam_sm_authenticate` on this handle recorded
    /// (single-line mode), if it recorded one.
    pub attempt: Option<AttemptId>,
    /// Nothing (more) to give back on this handle: a success hook already
    /// did, or the last authenticate recorded nothing.
    pub given_back: bool,
}

/// The pam_set_data key; only [`set_handle_state`] writes it.
const STATE_KEY: &str = "pam_banguard_attempt";

/// This handle's state, if a hook of this module stored one (in this
/// process: a forked child's state never reaches its parent).
pub fn handle_state(pamh: &PamHandle) -> Option<HandleState> {
    // SAFETY: the data under STATE_KEY is only ever stored by
    // set_handle_state below, always as a Box<HandleState>, so the type
    // matches; we copy the value out before the borrow ends.
    unsafe { pamh.get_data::<HandleState>(STATE_KEY) }.ok().copied()
}

/// Stores this handle's state (replacing the old one; pam-bindings' cleanup
/// only drops the Box, which is all a Copy struct needs).
pub fn set_handle_state(pamh: &mut PamHandle, state: HandleState) -> Result<(), PamResultCode> {
    pamh.set_data(STATE_KEY, Box::new(state))
}

/// The engine (config and open store) kept on a handle between hooks: the
/// next password on the same connection and the success hooks after an
/// authenticate reuse it instead of reading the config and opening the
/// store again.
struct CachedEngine {
    /// The process that opened it.
    pid: u32,
    /// The `config=` it was opened with.
    config: Option<PathBuf>,
    engine: RefCell<Option<Banguard>>,
}

impl Drop for CachedEngine {
    fn drop(&mut self) {
        // libpam runs this at pam_end, or when the data is replaced. A
        // forked child (sshd's keyboard-interactive and post-auth children)
        // holds a copy of the parent's connection: closing it there could
        // disturb the parent's locks, so the child leaves it to its exit.
        if std::process::id() != self.pid {
            std::mem::forget(self.engine.get_mut().take());
        }
    }
}

/// The pam_set_data key; only [`keep_engine`] writes it.
const ENGINE_KEY: &str = "pam_banguard_engine";

/// Takes the engine an earlier hook of this process left on the handle for
/// the same `config=`, if any.
pub fn take_engine(pamh: &PamHandle, config: Option<&Path>) -> Option<Banguard> {
    // SAFETY: the data under ENGINE_KEY is only ever stored by keep_engine
    // below, always as a Box<CachedEngine>, so the type matches; the
    // reference does not outlive this call.
    let cached = unsafe { pamh.get_data::<CachedEngine>(ENGINE_KEY) }.ok()?;
    if cached.pid != std::process::id() || cached.config.as_deref() != config {
        return None;
    }
    cached.engine.try_borrow_mut().ok()?.take()
}

/// Takes whatever engine an earlier hook of this process left on the
/// handle, with the `config=` it was opened with.
pub fn take_any_engine(pamh: &PamHandle) -> Option<(Option<PathBuf>, Banguard)> {
    // SAFETY: as in take_engine.
    let cached = unsafe { pamh.get_data::<CachedEngine>(ENGINE_KEY) }.ok()?;
    if cached.pid != std::process::id() {
        return None;
    }
    let engine = cached.engine.try_borrow_mut().ok()?.take()?;
    Some((cached.config.clone(), engine))
}

/// Leaves `engine` on the handle for the next hook (libpam drops it at
/// pam_end).
pub fn keep_engine(pamh: &mut PamHandle, config: Option<&Path>, engine: Banguard) {
    let cached = CachedEngine {
        pid: std::process::id(),
        config: config.map(Path::to_path_buf),
        engine: RefCell::new(Some(engine)),
    };
    // On failure the Box (and the engine) is dropped here: the next hook
    // opens its own.
    let _ = pamh.set_data(ENGINE_KEY, Box::new(cached));
}
