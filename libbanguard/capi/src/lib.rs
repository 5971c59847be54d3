//! `libbanguard.so`: the C ABI of banguard, declared in
//! `include/banguard.h`, for daemons that want the `hosts_ctl()` question
//! "may this client use this service?" answered by the same config and
//! store as `pam_banguard.so`.
//!
//! Rules this file keeps:
//!
//! * Nothing unwinds or aborts across the boundary: every `extern "C"`
//!   function runs its body under [`std::panic::catch_unwind`]; a panic
//!   becomes `BANGUARD_EPANIC` with the panic message in the error slot,
//!   and is never printed (an inetd-style daemon's stderr may be the
//!   client's socket).
//! * Errors become an `int` in exactly one place, [`code_of`]; the message
//!   goes to the handle's error slot, or to the calling thread's slot when
//!   there is no handle (`banguard_open`, `banguard_ctl`, a NULL handle).
//! * `unsafe` only where a C pointer is read, each with a `// SAFETY:` note.
//!
//! pam_banguard does not depend on this crate, so none of these symbols end
//! up in the PAM module (it exports only `pam_sm_*`, a test checks).

use banguard::policy::Verdict;
use banguard::{AttemptRef, Banguard, Config, Error, ErrorKind, Request};
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString, c_char, c_int};
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// The client may use the service (`banguard_check`, `banguard_ctl`), or
/// may still try (`banguard_record_failure`).
pub const BANGUARD_ALLOW: c_int = 1;
/// The client is refused: banned, or out of tries.
pub const BANGUARD_DENY: c_int = 0;
/// Success of a call that answers no question (`banguard_open`,
/// `banguard_record_success`).
pub const BANGUARD_OK: c_int = 0;
/// A NULL or invalid argument: NULL handle or string, text that is not
/// UTF-8, an empty or reserved service name, a client address that is not
/// an IPv4/IPv6 literal.
pub const BANGUARD_EINVAL: c_int = -1;
/// The config could not be read or is invalid.
pub const BANGUARD_ECONFIG: c_int = -2;
/// The config or the store may be changed by someone other than root (or
/// the calling user): refused.
pub const BANGUARD_EINSECURE: c_int = -3;
/// The store (SQLite file) could not be opened or used: missing directory,
/// no permission, locked beyond the busy timeout, full, corrupt, too new.
pub const BANGUARD_ESTORE: c_int = -4;
/// An internal error (a bug): a panic inside libbanguard was caught.
pub const BANGUARD_EPANIC: c_int = -5;

/// The opaque handle (`banguard_t` in C): an engine (config + open store)
/// behind a lock. Messages of failed calls are kept per thread (see
/// [`HANDLE_ERRORS`]), so one thread's call never frees the string another
/// thread is reading.
pub struct Handle {
    /// Unique in this process: the key of the per-thread messages (an
    /// address may be reused by a later handle).
    id: u64,
    engine: Mutex<Banguard>,
}

impl Handle {
    /// The engine, also after a panic in an earlier call (the transaction
    /// that call had open was rolled back when it unwound).
    fn lock(&self) -> MutexGuard<'_, Banguard> {
        self.engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The next handle's id.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Handles a thread remembers messages for; the oldest is forgotten first.
const HANDLE_ERROR_SLOTS: usize = 16;

/// A failed call as the C caller sees it.
#[derive(Debug)]
struct Failure {
    code: c_int,
    message: String,
}

impl Failure {
    fn invalid(message: impl Into<String>) -> Failure {
        Failure { code: BANGUARD_EINVAL, message: message.into() }
    }
}

/// What a call was doing when the core failed: an I/O error while loading
/// the config is a config error, anywhere else a store error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Config,
    Store,
}

/// The one place where a core error becomes a C result code.
fn code_of(e: &Error, stage: Stage) -> c_int {
    match e.kind() {
        ErrorKind::Config => BANGUARD_ECONFIG,
        ErrorKind::Insecure => BANGUARD_EINSECURE,
        ErrorKind::InvalidInput => BANGUARD_EINVAL,
        // An overload is the store not answering in time.
        ErrorKind::Store | ErrorKind::Overload => BANGUARD_ESTORE,
        // Io, Command and anything newer: by where it happened.
        _ => match stage {
            Stage::Config => BANGUARD_ECONFIG,
            Stage::Store => BANGUARD_ESTORE,
        },
    }
}

fn fail(e: &Error, stage: Stage) -> Failure {
    Failure { code: code_of(e, stage), message: e.to_string() }
}

// ----- error slots and panics -----

thread_local! {
    /// Message of the last failed handle-less call in this thread.
    static THREAD_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// This thread's messages of its last call on each handle it used
    /// (most recent first): (handle id, message, "" after a success).
    static HANDLE_ERRORS: RefCell<Vec<(u64, CString)>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread runs inside a `banguard_*` call.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// What the panic hook saw of the last panic inside a call.
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn to_cstring(message: String) -> CString {
    // Messages quote caller input, which came from C strings, but keep the
    // promise of a C string whatever they hold.
    CString::new(message.replace('\0', "\\0")).unwrap_or_default()
}

fn set_thread_error(message: String) {
    let _ = THREAD_ERROR.try_with(|slot| *slot.borrow_mut() = to_cstring(message));
}

/// Records this thread's last call on handle `id`.
fn set_handle_error(id: u64, message: String) {
    let _ = HANDLE_ERRORS.try_with(|slots| {
        let mut slots = slots.borrow_mut();
        slots.retain(|(h, _)| *h != id);
        slots.insert(0, (id, to_cstring(message)));
        slots.truncate(HANDLE_ERROR_SLOTS);
    });
}

/// Installs (once) a panic hook that keeps panics inside `banguard_*` calls
/// quiet and records their message; panics elsewhere (a Rust program using
/// the rlib) go to the hook that was there before.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CALL.try_with(Cell::get).unwrap_or(false) {
                let _ = PANIC_MESSAGE.try_with(|m| *m.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_failure(payload: &(dyn std::any::Any + Send)) -> Failure {
    let message = PANIC_MESSAGE.try_with(|m| m.borrow_mut().take()).ok().flatten().unwrap_or_else(|| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    });
    Failure {
        code: BANGUARD_EPANIC,
        message: format!("internal error in libbanguard (please report): {}", message.replace('\n', " ")),
    }
}

/// Marks the thread as inside a call for the panic hook.
struct InCall(bool);

impl InCall {
    fn enter() -> InCall {
        InCall(IN_CALL.try_with(|c| c.replace(true)).unwrap_or(false))
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        let _ = IN_CALL.try_with(|c| c.set(self.0));
    }
}

/// Runs `f` with panics caught and turned into a result.
fn catch<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    install_panic_hook();
    let _in_call = InCall::enter();
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_failure(&*payload)))
}

/// The body of a handle-less entry point: failures go to the thread's slot.
fn guard(f: impl FnOnce() -> Result<c_int, Failure>) -> c_int {
    // The outer catch_unwind covers the slot bookkeeping itself.
    let outer = panic::catch_unwind(AssertUnwindSafe(|| {
        set_thread_error(String::new());
        match catch(f) {
            Ok(code) => code,
            Err(failure) => {
                set_thread_error(failure.message);
                failure.code
            }
        }
    }));
    outer.unwrap_or(BANGUARD_EPANIC)
}

/// The body of an entry point on a handle: failures go to the handle's
/// slot (or the thread's, when `bg` is NULL).
///
/// # Safety
/// `bg` is NULL or a handle from `banguard_open` not yet closed.
unsafe fn with_handle(bg: *const Handle, f: impl FnOnce(&mut Banguard) -> Result<c_int, Failure>) -> c_int {
    // SAFETY: the caller's contract: NULL or a live handle.
    let Some(handle) = (unsafe { bg.as_ref() }) else {
        return guard(|| Err(Failure::invalid("the banguard_t handle is NULL")));
    };
    let outer = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut engine = handle.lock();
        match catch(|| f(&mut engine)) {
            Ok(code) => {
                set_handle_error(handle.id, String::new());
                code
            }
            Err(failure) => {
                set_handle_error(handle.id, failure.message);
                failure.code
            }
        }
    }));
    outer.unwrap_or(BANGUARD_EPANIC)
}

// ----- arguments -----

/// A required string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged during the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, NUL-terminated and valid for the call (caller's contract).
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| Failure::invalid(format!("{what} {c:?} is not valid UTF-8")))
}

/// An optional string argument (NULL = none).
///
/// # Safety
/// As for [`text`].
unsafe fn optional_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded caller's contract.
    unsafe { text(p, what) }.map(Some)
}

/// Checks a service name with the core's one rule (which also keeps out
/// `*`, the store's "all services").
fn service_name(s: &str) -> Result<&str, Failure> {
    banguard::config::check_service_name(s).map_err(Failure::invalid)?;
    Ok(s)
}

/// Parses the client address: an IPv4/IPv6 literal, brackets, a zone id and
/// IPv4-mapped IPv6 accepted. A name is refused: a C caller has the
/// socket's address, and banguard never resolves names.
fn client_address(s: &str) -> Result<IpAddr, Failure> {
    banguard::addr::parse_addr(s).ok_or_else(|| {
        Failure::invalid(format!(
            "client_addr {s:?} is not an IPv4 or IPv6 address literal \
             (pass the peer's numeric address, e.g. from getpeername() + getnameinfo(NI_NUMERICHOST))"
        ))
    })
}

/// The request for one call, arguments checked.
///
/// # Safety
/// Each pointer is NULL or a NUL-terminated string valid during the call.
unsafe fn request<'a>(
    service: *const c_char,
    client_addr: *const c_char,
    user: *const c_char,
) -> Result<Request<'a>, Failure> {
    // SAFETY: forwarded caller's contract.
    let service = service_name(unsafe { text(service, "service") }?)?;
    // SAFETY: forwarded caller's contract.
    let text = unsafe { text(client_addr, "client_addr") }?;
    let addr = client_address(text)?;
    // SAFETY: forwarded caller's contract.
    let user = unsafe { optional_text(user, "user") }?;
    // The literal as PAM_RHOST, its parsed form as the hint: both agree.
    Ok(Request { service, rhost: Some(text), hint: Some(addr), user })
}

// ----- verdicts -----

/// ALLOW or DENY; a ban this call created is announced.
fn answer(engine: &Banguard, verdict: &Verdict) -> c_int {
    match verdict {
        Verdict::Untracked { .. } => BANGUARD_ALLOW,
        Verdict::Allowed { account, .. } => {
            if let Some(a) = account.as_ref().filter(|a| a.new_lock) {
                announce(engine, &a.lock_line(engine.now()));
            }
            BANGUARD_ALLOW
        }
        Verdict::AccountLocked { account, .. } => {
            if account.new_lock {
                announce(engine, &account.lock_line(engine.now()));
            }
            BANGUARD_DENY
        }
        Verdict::Refused { ban, new, escalated, .. } => {
            if *new {
                // The wording pam_banguard uses.
                announce(engine, &ban.wording(engine.config(), true));
            } else if *escalated {
                announce(engine, &ban.escalation_line(&engine.config().sync));
            }
            BANGUARD_DENY
        }
    }
}

/// One authpriv notice, then the sync trigger.
fn announce(engine: &Banguard, line: &str) {
    banguard::sys::syslog(libc::LOG_AUTHPRIV | libc::LOG_NOTICE, &format!("libbanguard: {line}"));
    let _ = banguard::trigger::touch(&engine.config().sync.trigger_file);
}

// ----- the C ABI -----

/// Opens a handle: reads the config (`config_path`, or the default
/// `/etc/banguard/banguard.toml` when NULL) and opens the store it names.
///
/// # Safety
/// `config_path` is NULL or a NUL-terminated string; `out` is NULL or
/// points to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_open(config_path: *const c_char, out: *mut *mut Handle) -> c_int {
    if !out.is_null() {
        // SAFETY: `out` is non-NULL and writable (caller's contract).
        unsafe { out.write(std::ptr::null_mut()) };
    }
    guard(|| {
        if out.is_null() {
            return Err(Failure::invalid("out (banguard_t **) is NULL"));
        }
        // SAFETY: caller's contract on config_path.
        let path = unsafe { optional_text(config_path, "config_path") }?;
        let config = match path {
            Some(p) => Config::load(Path::new(p)),
            None => Config::load_default(),
        }
        .map_err(|e| fail(&e, Stage::Config))?;
        let engine = Banguard::open(config).map_err(|e| fail(&e, Stage::Store))?;
        let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        let handle = Box::new(Handle { id, engine: Mutex::new(engine) });
        // SAFETY: `out` is non-NULL and writable (checked above, caller's contract).
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(BANGUARD_OK)
    })
}

/// Closes a handle (NULL: nothing).
///
/// # Safety
/// `bg` is NULL or a handle from `banguard_open` not yet closed, and no
/// other thread uses it during or after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_close(bg: *mut Handle) {
    if bg.is_null() {
        return;
    }
    // Not `guard`: closing has nothing to report and leaves the thread's
    // error slot alone.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        catch(|| {
            // SAFETY: made by Box::into_raw in banguard_open; closed once (caller's contract).
            drop(unsafe { Box::from_raw(bg) });
            Ok(())
        })
    }));
}

/// The message of this thread's last call on `bg` if it failed ("" if it
/// succeeded, or if this thread made none); with `bg` NULL, the last failed
/// handle-less call of this thread.
///
/// # Safety
/// `bg` is NULL or a live handle. The string is this thread's own: valid
/// until this thread's next call on `bg` (for NULL, its next handle-less
/// call), whatever other threads do.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_last_error(bg: *const Handle) -> *const c_char {
    let read = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: caller's contract: NULL or a live handle.
        match unsafe { bg.as_ref() } {
            Some(handle) => HANDLE_ERRORS
                .try_with(|slots| {
                    let slots = slots.borrow();
                    slots.iter().find(|(h, _)| *h == handle.id).map_or(c"".as_ptr(), |(_, m)| m.as_ptr())
                })
                .unwrap_or(c"".as_ptr()),
            None => THREAD_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(c"".as_ptr()),
        }
    }));
    read.unwrap_or(c"internal error in libbanguard (banguard_last_error)".as_ptr())
}

/// "May this client use this service?": refuses a banned (or exhausted)
/// host; records nothing.
///
/// # Safety
/// `bg` is NULL or a live handle; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_check(
    bg: *mut Handle,
    service: *const c_char,
    client_addr: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract, forwarded; a NULL user is allowed.
    unsafe { banguard_check_user(bg, service, client_addr, std::ptr::null()) }
}

/// `banguard_check` for a password about to be checked for `user`: also
/// refuses while the account is locked for unfamiliar sources.
///
/// # Safety
/// `bg` is NULL or a live handle; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_check_user(
    bg: *mut Handle,
    service: *const c_char,
    client_addr: *const c_char,
    user: *const c_char,
) -> c_int {
    let run = |engine: &mut Banguard| {
        // SAFETY: caller's contract on the strings.
        let req = unsafe { request(service, client_addr, user) }?;
        let verdict = engine.check(&req).map_err(|e| fail(&e, Stage::Store))?;
        Ok(answer(engine, &verdict))
    };
    // SAFETY: caller's contract on the handle.
    unsafe { with_handle(bg, run) }
}

/// Records one failed authentication; bans the host when that makes
/// `maxretry` failures within `findtime`.
///
/// # Safety
/// `bg` is NULL or a live handle; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_record_failure(
    bg: *mut Handle,
    service: *const c_char,
    client_addr: *const c_char,
    user: *const c_char,
) -> c_int {
    let run = |engine: &mut Banguard| {
        // SAFETY: caller's contract on the strings.
        let req = unsafe { request(service, client_addr, user) }?;
        let verdict = engine.record_failure(&req).map_err(|e| fail(&e, Stage::Store))?;
        Ok(answer(engine, &verdict))
    };
    // SAFETY: caller's contract on the handle.
    unsafe { with_handle(bg, run) }
}

/// Records a successful authentication: with `reset_on_success` in the
/// config, the host's failures on the service are forgotten.
///
/// # Safety
/// `bg` is NULL or a live handle; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_record_success(
    bg: *mut Handle,
    service: *const c_char,
    client_addr: *const c_char,
    user: *const c_char,
) -> c_int {
    let run = |engine: &mut Banguard| {
        // SAFETY: caller's contract on the strings.
        let req = unsafe { request(service, client_addr, user) }?;
        engine.record_success(&req, AttemptRef::None).map_err(|e| fail(&e, Stage::Store))?;
        Ok(BANGUARD_OK)
    };
    // SAFETY: caller's contract on the handle.
    unsafe { with_handle(bg, run) }
}

/// One-shot `hosts_ctl()`: open with the default config, check, close.
///
/// # Safety
/// The strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn banguard_ctl(service: *const c_char, client_addr: *const c_char) -> c_int {
    guard(|| {
        // Arguments first: a bad call touches no file.
        // SAFETY: forwarded caller's contract.
        let req = unsafe { request(service, client_addr, std::ptr::null()) }?;
        let config = Config::load_default().map_err(|e| fail(&e, Stage::Config))?;
        let mut engine = Banguard::open(config).map_err(|e| fail(&e, Stage::Store))?;
        let verdict = engine.check(&req).map_err(|e| fail(&e, Stage::Store))?;
        Ok(answer(&engine, &verdict))
    })
}

/// A static description of a result code (never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn banguard_strerror(code: c_int) -> *const c_char {
    let text = |code| -> &'static CStr {
        match code {
            BANGUARD_ALLOW => c"allowed",
            BANGUARD_DENY => c"denied (from banguard_open and banguard_record_success: success)",
            BANGUARD_EINVAL => c"invalid argument",
            BANGUARD_ECONFIG => c"cannot read or parse the banguard config",
            BANGUARD_EINSECURE => c"refused: config or store writable by someone other than root",
            BANGUARD_ESTORE => c"cannot open or use the banguard store",
            BANGUARD_EPANIC => c"internal error in libbanguard",
            _ => c"unknown banguard result code",
        }
    };
    panic::catch_unwind(|| text(code)).unwrap_or(c"internal error in libbanguard").as_ptr()
}

/// The library's version as `major * 10000 + minor * 100 + patch`.
#[unsafe(no_mangle)]
pub extern "C" fn banguard_version() -> c_int {
    let part = |s: &str| s.parse::<c_int>().unwrap_or(0);
    panic::catch_unwind(|| {
        part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
            + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + part(env!("CARGO_PKG_VERSION_PATCH"))
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests;
