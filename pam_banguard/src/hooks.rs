//! What each hook does. Every hook body runs under `catch_unwind`; every
//! error becomes a PAM code in one place, [`outcome`].

use crate::ffi::{self, HandleState};
use crate::options::{Mode, Options};
use crate::runfiles;
use banguard::config::FailMode;
use banguard::duration::format_duration;
use banguard::policy::{SystemClock, Untracked};
use banguard::store::Access;
use banguard::{AttemptRef, Banguard, Config, Request, Verdict, addr};
use pam::constants::{PAM_DELETE_CRED, PAM_ESTABLISH_CRED, PamFlag, PamResultCode};
use pam::items::{RHost, Service, User};
use pam::module::PamHandle;
use std::any::Any;
use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Once};

/// Which libpam entry point is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Authenticate,
    Setcred,
    Account,
}

/// What a hook body found out before it returned or failed; the error
/// path needs it.
struct Ctx {
    failmode: FailMode,
    /// What the line does (an overload is answered per mode).
    mode: Mode,
    /// This line answers PAM_SUCCESS, not PAM_IGNORE, when it has nothing
    /// to say (`authsucc`, see `body`).
    pass_is_success: bool,
    debug: bool,
    run_dir: PathBuf,
    /// The PAM service, once known (for the metrics' trouble count).
    service: String,
}

impl Ctx {
    /// The line's neutral answer.
    fn pass(&self) -> PamResultCode {
        if self.pass_is_success { PamResultCode::PAM_SUCCESS } else { PamResultCode::PAM_IGNORE }
    }
}

/// Why a hook could not do its job.
enum Trouble {
    Options(String),
    Core(banguard::Error),
    Panic(String),
}

impl Trouble {
    /// Errors of one kind share a rate-limit stamp.
    fn kind(&self) -> &'static str {
        match self {
            Trouble::Options(_) => "options",
            // A turn that did not come and a lock held too long are one
            // condition: one stamp, one count.
            Trouble::Core(e) if e.is_overload() => "overload",
            Trouble::Core(e) => e.kind().name(),
            Trouble::Panic(_) => "panic",
        }
    }
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Options(m) => f.write_str(m),
            Trouble::Core(e) => match e.platform_advice() {
                Some(advice) => write!(f, "{e}; {advice}"),
                None => write!(f, "{e}"),
            },
            Trouble::Panic(m) => write!(f, "internal error (panic): {m}"),
        }
    }
}

impl From<banguard::Error> for Trouble {
    fn from(e: banguard::Error) -> Self {
        Trouble::Core(e)
    }
}

/// Runs one hook: never panics, never returns PAM_ABORT.
pub fn run(pamh: &mut PamHandle, args: &[&CStr], hook: Hook, flags: PamFlag) -> PamResultCode {
    install_panic_hook();
    let mut ctx = Ctx {
        failmode: FailMode::Open,
        mode: Mode::Single,
        pass_is_success: false,
        debug: false,
        run_dir: PathBuf::from(runfiles::DEFAULT_RUN_DIR),
        service: String::new(),
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| body(pamh, args, hook, flags, &mut ctx)));
    let result = result.unwrap_or_else(|payload| Err(Trouble::Panic(panic_message(payload))));
    outcome(pamh, hook, &ctx, result)
}

/// The one place where errors become PAM codes.
///
/// * `pam_sm_authenticate`: failmode=open → the line's neutral answer
///   (PAM_IGNORE; PAM_SUCCESS for `authsucc`): the rest of the stack
///   decides; failmode=closed → PAM_PERM_DENIED, the same code as a ban:
///   banguard refuses, whatever the reason.
/// * setcred and account only give back a success: PAM_IGNORE always, so
///   banguard trouble can never lock out a login that passed its password.
/// * An overload (the attempt's turn at the store did not come within
///   `busy_timeout_ms`) is not a broken store and does not follow failmode:
///   the attempt could not be counted, so its password must not be checked.
///   It is refused with PAM_AUTHINFO_UNAVAIL (not a ban: the next attempt
///   is judged afresh); an `authfail` line cannot unsee the failure it was
///   to record and returns PAM_IGNORE, as it does for a recorded one.
fn outcome(pamh: &PamHandle, hook: Hook, ctx: &Ctx, result: Result<PamResultCode, Trouble>) -> PamResultCode {
    let trouble = match result {
        Ok(code) => return code,
        Err(t) => t,
    };
    let overload = matches!(&trouble, Trouble::Core(e) if e.is_overload());
    let (code, consequence) = match (hook, ctx.failmode) {
        (Hook::Authenticate, _) if overload => match ctx.mode {
            Mode::Single | Mode::Preauth => {
                (PamResultCode::PAM_AUTHINFO_UNAVAIL, "refused unchecked (not counted, not banned)")
            }
            Mode::Authfail => (PamResultCode::PAM_IGNORE, "this failure was not counted"),
            Mode::Authsucc => (ctx.pass(), "success not given back"),
        },
        (Hook::Authenticate, FailMode::Open) => {
            (ctx.pass(), "failmode=open: letting the rest of the stack decide")
        }
        (Hook::Authenticate, FailMode::Closed) => {
            (PamResultCode::PAM_PERM_DENIED, "failmode=closed: refusing")
        }
        (Hook::Setcred | Hook::Account, _) => (PamResultCode::PAM_IGNORE, "success not given back"),
    };
    // `debug` shows every occurrence; otherwise one line per kind per minute
    // across all processes, so a broken store cannot flood the log; an
    // overload line says how many attempts it stands for. Guarded too:
    // nothing may unwind into libpam, and the code is already decided.
    let logged = panic::catch_unwind(AssertUnwindSafe(|| {
        let period = runfiles::ERROR_LOG_PERIOD;
        runfiles::count_for_metrics(&ctx.run_dir, trouble.kind(), &ctx.service);
        if overload {
            let count = runfiles::count_and_report(&ctx.run_dir, trouble.kind(), period);
            if let Some(n) = count.or(ctx.debug.then_some(1)) {
                let msg =
                    format!("{trouble}; {consequence}; {n} attempt(s) answered so since the last such line");
                ffi::syslog(pamh, libc::LOG_ERR, &msg);
            }
        } else if ctx.debug || runfiles::first_in_period(&ctx.run_dir, trouble.kind(), period) {
            ffi::syslog(pamh, libc::LOG_ERR, &format!("{trouble}; {consequence}"));
        }
    }));
    if let Err(payload) = logged {
        std::mem::forget(payload);
    }
    code
}

fn body(
    pamh: &mut PamHandle,
    args: &[&CStr],
    hook: Hook,
    flags: PamFlag,
    ctx: &mut Ctx,
) -> Result<PamResultCode, Trouble> {
    let opts = Options::parse(args);
    // An engine an earlier hook left on the handle, taken by a success
    // hook (below): closed when this hook returns, unless reused.
    let mut released = None;
    ctx.debug = opts.debug;
    ctx.mode = opts.mode;
    if hook == Hook::Authenticate && opts.mode == Mode::Authsucc {
        // As pam_faillock's authsucc: in its documented stack the password
        // module *jumps* here on success, and a jump does not make a stack
        // succeed in libpam; this `sufficient` line's PAM_SUCCESS does.
        ctx.pass_is_success = true;
    }
    if let Some(f) = opts.failmode {
        ctx.failmode = f;
    }
    if hook != Hook::Authenticate {
        // Nothing of ours outlives the login's last hook: an engine an
        // earlier hook left is taken here and closed when this one returns
        // (sshd forks its unprivileged post-login process after these
        // hooks, without exec: it must not inherit root's files).
        released = ffi::take_any_engine(pamh);
    }
    if hook == Hook::Setcred && (flags & PAM_DELETE_CRED != 0 || opts.mode != Mode::Single) {
        // Explicit-mode lines do their work in pam_sm_authenticate.
        return Ok(PamResultCode::PAM_IGNORE);
    }
    let service = match &opts.service {
        Some(s) => s.clone(),
        None => item_text(pamh.get_item::<Service>().ok().flatten().map(|s| *s)).unwrap_or_default(),
    };
    ctx.service.clone_from(&service);
    let rhost = item_text(pamh.get_item::<RHost>().ok().flatten().map(|s| *s));
    // sshd vouches for the numeric client address here even when PAM_RHOST
    // holds a name (UseDNS yes).
    let hint = ffi::getenv(pamh, c"SSH_CONNECTION").and_then(|v| addr::parse_ssh_connection(&v));
    if addr::origin(rhost.as_deref(), hint) == addr::Origin::Local {
        // A local login (console, su): never tracked, and never refused for
        // banguard's own trouble, so root can always log in on the console.
        debug(pamh, ctx, "no PAM_RHOST: local login, not tracked");
        return Ok(ctx.pass());
    }
    if hook != Hook::Authenticate && ffi::handle_state(pamh).is_some_and(|s| s.given_back) {
        // account and setcred both fire after a success: the first gave back.
        debug(pamh, ctx, "success already given back on this handle");
        return Ok(ctx.pass());
    }
    let cached = match released.take() {
        Some((config, bg)) if config == opts.config => Some(bg),
        Some(_) => None,
        None => ffi::take_engine(pamh, opts.config.as_deref()),
    };
    let config = match (&cached, &opts.config) {
        (Some(bg), _) => Ok(bg.config().clone()),
        (None, Some(path)) => Config::load(path),
        (None, None) => Config::load_default(),
    };
    if let Ok(c) = &config {
        if let Some(dir) = c.sync.trigger_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            ctx.run_dir = dir.to_path_buf();
        }
        if opts.failmode.is_none() {
            ctx.failmode = c.policy(&service).failmode;
        }
    }
    if let Some(msg) = opts.error_message() {
        return Err(Trouble::Options(msg));
    }
    // The one rule for service names: a name outside it could not be named
    // in the config or on banguardctl's command line, nor logged safely.
    banguard::config::check_service_name(&service).map_err(Trouble::Options)?;
    let config = config?;
    if opts.test_panic {
        panic!("test_panic given on the module line");
    }
    let user = item_text(pamh.get_item::<User>().ok().flatten().map(|s| *s));
    let req = Request { service: &service, rhost: rhost.as_deref(), hint, user: user.as_deref() };
    let action = match (hook, opts.mode) {
        (Hook::Authenticate, Mode::Single) => Action::Attempt,
        (Hook::Authenticate, Mode::Preauth) => Action::Check,
        (Hook::Authenticate, Mode::Authfail) => Action::Failure,
        (Hook::Authenticate, Mode::Authsucc) | (Hook::Setcred | Hook::Account, _) => Action::GiveBack,
    };
    if let Some(reason) = Banguard::untracked(&config, &req) {
        // Nothing to count or refuse, so no store to open.
        if ctx.debug {
            debug(pamh, ctx, &format!("not tracked: {}", untracked_why(&reason, &req)));
        }
        if action == Action::Attempt {
            let _ = ffi::set_handle_state(pamh, HandleState { attempt: None, given_back: true });
        }
        return Ok(match action {
            Action::GiveBack => ctx.pass(),
            Action::Attempt | Action::Check | Action::Failure => PamResultCode::PAM_IGNORE,
        });
    }
    // Anti-poisoning (as pam_abl): any local user can run a PAM application
    // with a made-up PAM_RHOST, so only root writes. Others may still be
    // refused for an active ban, read from the store.
    if banguard::sys::real_uid() != 0 {
        if matches!(action, Action::Failure | Action::GiveBack) {
            debug(pamh, ctx, "not run by root: recording nothing");
            return Ok(ctx.pass());
        }
        let mut bg = Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock))?;
        let verdict = bg.peek(&req)?;
        return Ok(respond(pamh, ctx, &bg, &req, verdict));
    }
    let mut bg = match cached {
        Some(bg) => bg,
        None => Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock))?,
    };
    let keep = |pamh: &mut PamHandle, bg: Banguard| ffi::keep_engine(pamh, opts.config.as_deref(), bg);
    match action {
        Action::Attempt => {
            // Another authenticate on this handle means the previous
            // password failed (sshd: one call per password on one handle).
            let previous = ffi::handle_state(pamh).filter(|s| !s.given_back).and_then(|s| s.attempt);
            let verdict = bg.attempt(&req, previous);
            // Only an allowed attempt has something to give back. After a
            // refusal or an error the success hooks must not go looking by
            // pid either: they would find this handle's earlier, failed try.
            let state = match &verdict {
                Ok(Verdict::Allowed { attempt: Some(id), .. }) => {
                    HandleState { attempt: Some(*id), given_back: false }
                }
                _ => HandleState { attempt: None, given_back: true },
            };
            if ffi::set_handle_state(pamh, state).is_err() {
                // The success hooks then fall back to finding it by pid.
                debug(pamh, ctx, "pam_set_data failed: attempt id not kept");
            }
            // Kept only while a hook that needs it must follow: the success
            // hooks or the next password of a checked attempt.
            let pending = matches!(verdict, Ok(Verdict::Allowed { attempt: Some(_), .. }));
            let code = respond(pamh, ctx, &bg, &req, verdict?);
            if pending {
                keep(pamh, bg);
            }
            Ok(code)
        }
        Action::Check => {
            let verdict = bg.check(&req)?;
            let allowed = matches!(verdict, Verdict::Allowed { .. });
            let code = respond(pamh, ctx, &bg, &req, verdict);
            if allowed {
                // authfail or authsucc of the same pam_authenticate follows.
                keep(pamh, bg);
            }
            Ok(code)
        }
        Action::Failure => {
            let verdict = bg.record_failure(&req)?;
            respond(pamh, ctx, &bg, &req, verdict);
            // Like pam_faillock: the stack's own failure stands.
            Ok(PamResultCode::PAM_IGNORE)
        }
        Action::GiveBack => {
            // The by-pid lookup is a heuristic: use it only on the measured
            // "this login succeeded" signals (doc/sshd-pam-calls.md), not on
            // credential renewals (REINITIALIZE, REFRESH).
            let by_pid = hook != Hook::Setcred || flags & PAM_ESTABLISH_CRED != 0;
            give_back(pamh, ctx, &mut bg, &req, by_pid)?;
            if hook == Hook::Authenticate && opts.mode == Mode::Authsucc {
                // Placed after the password module: the password was right.
                // The explicit preauth/authfail stack records no attempt to
                // give back, so its familiar networks are learned here.
                bg.password_proven(&req)?;
            }
            Ok(ctx.pass())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Attempt,
    Check,
    Failure,
    GiveBack,
}

/// Gives back the attempt of a login that succeeded, once per handle.
///
/// By id when this handle recorded it; otherwise (if `by_pid`) by origin
/// pid: sshd's keyboard-interactive method runs pam_authenticate in a
/// forked child and the success hooks in the monitor, which never saw the
/// child's handle data. The core then gives back the newest attempt
/// recorded by this pid or a child of it. An id that gives back nothing (a
/// forked child already marked it failed, e.g. password tries followed by
/// keyboard-interactive on one connection) falls back to the origin as
/// well; repeating is harmless, the core marks an attempt given back once.
fn give_back(
    pamh: &mut PamHandle,
    ctx: &Ctx,
    bg: &mut Banguard,
    req: &Request<'_>,
    by_pid: bool,
) -> banguard::Result<()> {
    let state = ffi::handle_state(pamh);
    if state.is_some_and(|s| s.given_back) {
        debug(pamh, ctx, "success already given back on this handle");
        return Ok(());
    }
    let mut done = false;
    if let Some(id) = state.and_then(|s| s.attempt) {
        done = bg.record_success(req, AttemptRef::Id(id))?;
    }
    if !done && by_pid {
        done = bg.record_success(req, AttemptRef::Origin { pid: std::process::id() })?;
    }
    let attempt = state.and_then(|s| s.attempt);
    if attempt.is_some() || by_pid {
        // Done for this handle (and for processes forked from it later,
        // such as sshd's post-auth child, which calls setcred again).
        let _ = ffi::set_handle_state(pamh, HandleState { attempt, given_back: true });
    }
    debug(
        pamh,
        ctx,
        if done { "success: attempt given back" } else { "success: no pending attempt to give back" },
    );
    Ok(())
}

/// Logs a verdict and turns it into the hook's code.
fn respond(
    pamh: &mut PamHandle,
    ctx: &Ctx,
    bg: &Banguard,
    req: &Request<'_>,
    verdict: Verdict,
) -> PamResultCode {
    match verdict {
        Verdict::Untracked { reason } => {
            if ctx.debug {
                debug(pamh, ctx, &format!("not tracked: {}", untracked_why(&reason, req)));
            }
            PamResultCode::PAM_IGNORE
        }
        Verdict::Allowed { host, used, maxretry, account, .. } => {
            if let Some(a) = account.as_ref().filter(|a| a.new_lock) {
                // Learning: the lock that would have been made.
                ffi::syslog(pamh, libc::LOG_NOTICE, &a.lock_line(bg.now()));
            }
            if ctx.debug {
                debug(pamh, ctx, &format!("{host} on {}: {used} of {maxretry} attempts used", req.service));
            }
            PamResultCode::PAM_IGNORE
        }
        Verdict::AccountLocked { host, account, used, maxretry } => {
            if account.new_lock {
                ffi::syslog(pamh, libc::LOG_NOTICE, &account.lock_line(bg.now()));
                // The sync job mails and shares the lock.
                if let Err(e) = banguard::trigger::touch(&bg.config().sync.trigger_file) {
                    debug(pamh, ctx, &format!("trigger {}: {e}", bg.config().sync.trigger_file.display()));
                }
            } else if ctx.debug {
                let msg = format!(
                    "refused {host} on {}: account {} locked for unfamiliar sources ({used} of {maxretry} attempts of the host used)",
                    req.service,
                    banguard::text::clean(&account.account)
                );
                ffi::syslog(pamh, libc::LOG_INFO, &msg);
            }
            ffi::fail_delay(pamh, bg.config().policy(req.service).refusal_delay);
            PamResultCode::PAM_PERM_DENIED
        }
        Verdict::Refused { host, ban, new, escalated } => {
            if new || escalated {
                let line =
                    if new { ban.wording(bg.config(), true) } else { ban.escalation_line(&bg.config().sync) };
                ffi::syslog(pamh, libc::LOG_NOTICE, &line);
                // Wake the sync job (a systemd path unit) at once.
                if let Err(e) = banguard::trigger::touch(&bg.config().sync.trigger_file) {
                    debug(pamh, ctx, &format!("trigger {}: {e}", bg.config().sync.trigger_file.display()));
                }
            } else if ctx.debug {
                let left = match ban.expires {
                    Some(e) => format!("{} left", format_duration(e - bg.now())),
                    None => "permanent".to_string(),
                };
                let msg =
                    format!("refused {host} on {}: banned on {} ({left})", req.service, ban.service_label());
                ffi::syslog(pamh, libc::LOG_INFO, &msg);
            }
            // As slow as a wrong password: a refusal must not let a bot
            // reconnect faster than pam_unix's delay would.
            ffi::fail_delay(pamh, bg.config().policy(req.service).refusal_delay);
            PamResultCode::PAM_PERM_DENIED
        }
    }
}

fn untracked_why(reason: &Untracked, req: &Request<'_>) -> String {
    match reason {
        Untracked::Disabled => format!("service {} is disabled", req.service),
        Untracked::Ignored(net) => format!("ignoreip {net}"),
        Untracked::Local => "no remote host".to_string(),
    }
}

fn debug(pamh: &PamHandle, ctx: &Ctx, msg: &str) {
    if ctx.debug {
        ffi::syslog(pamh, libc::LOG_DEBUG, msg);
    }
}

fn item_text(item: Option<&CStr>) -> Option<String> {
    item.map(|s| s.to_string_lossy().into_owned())
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    // Dropping a payload can itself panic; never let that escape.
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(again);
    }
    msg
}

/// Sends panic messages to syslog instead of the host's stderr (sshd's
/// stderr may be a client's session). Each cdylib has its own std, so this
/// hook is private to pam_banguard.so.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let msg = info.to_string().replace('\n', " ");
            ffi::syslog_global(libc::LOG_ERR, &format!("pam_banguard: {msg}"));
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted() {
        let p = panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p), "boom 1");
        let p = panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(p), "static");
        let p = panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(p), "non-string panic payload");
    }
}
