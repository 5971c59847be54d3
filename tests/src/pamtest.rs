//! A small libpam driver for tests: whole PAM stacks from a temporary
//! directory through `pam_start_confdir` (Linux-PAM ≥ 1.4), so tests never
//! touch /etc/pam.d and can name the built module by absolute path.
//!
//! It can do what real applications do to a module: several
//! `pam_authenticate` calls on one handle (sshd's password method), set
//! PAM_RHOST and PAM environment variables (sshd's SSH_CONNECTION), call
//! `pam_setcred`/`pam_acct_mgmt`, and drop a handle without `pam_end`
//! (sshd's keyboard-interactive child, which leaves through `_exit`).
//!
//! Passwords come from a queue the conversation function pops for every
//! echo-off prompt; an empty queue answers PAM_CONV_ERR.

use crate::Netns;
use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::ptr;
use std::sync::Mutex;

/// Return codes (security/_pam_types.h).
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_SYSTEM_ERR: c_int = 4;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_CRED_ERR: c_int = 17;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;
pub const PAM_ABORT: c_int = 26;

/// Items for `pam_set_item`.
pub const PAM_USER: c_int = 2;
pub const PAM_TTY: c_int = 3;
pub const PAM_RHOST: c_int = 4;
const PAM_FAIL_DELAY: c_int = 10;

/// Flags for `pam_setcred`.
pub const PAM_ESTABLISH_CRED: c_int = 0x0002;
pub const PAM_DELETE_CRED: c_int = 0x0004;
pub const PAM_REINITIALIZE_CRED: c_int = 0x0008;
pub const PAM_REFRESH_CRED: c_int = 0x0010;

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

/// Name of a PAM code, for readable assertion messages.
pub fn code_name(rc: c_int) -> &'static str {
    match rc {
        PAM_SUCCESS => "PAM_SUCCESS",
        PAM_SERVICE_ERR => "PAM_SERVICE_ERR",
        PAM_SYSTEM_ERR => "PAM_SYSTEM_ERR",
        PAM_PERM_DENIED => "PAM_PERM_DENIED",
        PAM_AUTH_ERR => "PAM_AUTH_ERR",
        PAM_AUTHINFO_UNAVAIL => "PAM_AUTHINFO_UNAVAIL",
        PAM_CRED_ERR => "PAM_CRED_ERR",
        PAM_CONV_ERR => "PAM_CONV_ERR",
        PAM_IGNORE => "PAM_IGNORE",
        PAM_ABORT => "PAM_ABORT",
        _ => "other",
    }
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    unsafe extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_putenv(pamh: *mut c_void, name_value: *const c_char) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

/// What the conversation answers and what it was told.
#[derive(Default)]
struct Conversation {
    passwords: Mutex<VecDeque<String>>,
    prompts: Mutex<Vec<String>>,
    /// (status, µs) per `pam_authenticate`: what libpam would have slept.
    delays: Mutex<Vec<(c_int, u32)>>,
}

/// One PAM handle. `Drop` calls `pam_end` with the last status, as a
/// well-behaved application does.
pub struct Pam {
    handle: *mut c_void,
    // Boxed: libpam keeps pointers to both for the handle's lifetime.
    _conv: Box<PamConv>,
    state: Box<Conversation>,
    last: c_int,
}

impl Pam {
    /// `pam_start_confdir(service, user, conv, confdir)`.
    pub fn start(confdir: &Path, service: &str, user: &str) -> Pam {
        let state = Box::new(Conversation::default());
        let conv = Box::new(PamConv {
            conv: Some(converse),
            appdata_ptr: (&*state as *const Conversation).cast_mut().cast(),
        });
        let service_c = CString::new(service).expect("service");
        let user_c = CString::new(user).expect("user");
        let dir_c = CString::new(confdir.as_os_str().as_encoded_bytes()).expect("confdir");
        let mut handle = ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call (libpam
        // copies them); conv and its appdata are boxed and outlive the handle
        // (the handle is ended or leaked while `self` still owns them).
        let rc = unsafe {
            pam_start_confdir(service_c.as_ptr(), user_c.as_ptr(), &*conv, dir_c.as_ptr(), &mut handle)
        };
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir({service}, {})", confdir.display());
        assert!(!handle.is_null());
        // Given a delay function, libpam hands the fail delay to the
        // application instead of sleeping it: tests stay fast and can see
        // what the modules asked for.
        let delay_fn: DelayFn = record_delay;
        // SAFETY: live handle; PAM_FAIL_DELAY takes a function pointer.
        let rc = unsafe { pam_set_item(handle, PAM_FAIL_DELAY, delay_fn as *const c_void) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item(PAM_FAIL_DELAY)");
        Pam { handle, _conv: conv, state, last: PAM_SUCCESS }
    }

    /// The fail delays libpam computed so far, one per `pam_authenticate`
    /// (status, µs; libpam varies the longest delay asked for by ±50 %).
    pub fn delays(&self) -> Vec<(c_int, u32)> {
        self.state.delays.lock().expect("lock").clone()
    }

    /// Queues passwords for the next echo-off prompts.
    pub fn passwords<I: IntoIterator<Item = S>, S: Into<String>>(&self, pws: I) -> &Self {
        self.state.passwords.lock().expect("lock").extend(pws.into_iter().map(Into::into));
        self
    }

    /// The prompts the conversation has seen so far.
    pub fn prompts(&self) -> Vec<String> {
        self.state.prompts.lock().expect("lock").clone()
    }

    /// `pam_set_item` with a string item (PAM_RHOST, PAM_TTY, PAM_USER).
    pub fn set_item(&mut self, item: c_int, value: &str) -> c_int {
        let v = CString::new(value).expect("item");
        // SAFETY: live handle; libpam copies string items.
        unsafe { pam_set_item(self.handle, item, v.as_ptr().cast()) }
    }

    /// Sets PAM_RHOST.
    pub fn rhost(&mut self, rhost: &str) -> &mut Self {
        assert_eq!(self.set_item(PAM_RHOST, rhost), PAM_SUCCESS);
        self
    }

    /// `pam_putenv("NAME=value")`.
    pub fn putenv(&mut self, name_value: &str) -> &mut Self {
        let v = CString::new(name_value).expect("env");
        // SAFETY: live handle; libpam copies the string.
        let rc = unsafe { pam_putenv(self.handle, v.as_ptr()) };
        assert_eq!(rc, PAM_SUCCESS, "pam_putenv({name_value})");
        self
    }

    /// `pam_authenticate(flags = 0)`.
    pub fn authenticate(&mut self) -> c_int {
        // SAFETY: live handle; the conversation state outlives the call.
        self.last = unsafe { pam_authenticate(self.handle, 0) };
        self.last
    }

    /// Queues one password, then authenticates.
    pub fn try_password(&mut self, pw: &str) -> c_int {
        self.passwords([pw]);
        self.authenticate()
    }

    /// `pam_setcred(flags)`.
    pub fn setcred(&mut self, flags: c_int) -> c_int {
        // SAFETY: live handle.
        self.last = unsafe { pam_setcred(self.handle, flags) };
        self.last
    }

    /// `pam_acct_mgmt(0)`.
    pub fn acct_mgmt(&mut self) -> c_int {
        // SAFETY: live handle.
        self.last = unsafe { pam_acct_mgmt(self.handle, 0) };
        self.last
    }

    /// Leaves the handle without `pam_end`, as a process that `_exit`s
    /// does: no cleanup callback runs. Leaks the handle and its
    /// conversation (libpam still points at it).
    pub fn abandon(self) {
        std::mem::forget(self);
    }

    /// `pam_end(status)` with an explicit status.
    pub fn end(mut self, status: c_int) -> c_int {
        // SAFETY: live handle; nulled so that Drop does not end it again.
        let rc = unsafe { pam_end(self.handle, status) };
        self.handle = ptr::null_mut();
        rc
    }
}

impl Drop for Pam {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: live handle, ended exactly once.
            unsafe { pam_end(self.handle, self.last) };
        }
    }
}

type DelayFn = unsafe extern "C" fn(c_int, u32, *mut c_void);

/// libpam's fail-delay callback: records instead of sleeping.
unsafe extern "C" fn record_delay(status: c_int, usec: u32, appdata: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        if appdata.is_null() {
            return;
        }
        // SAFETY: appdata is the Conversation boxed in `Pam`, alive while the handle is.
        let state = unsafe { &*(appdata as *const Conversation) };
        state.delays.lock().expect("lock").push((status, usec));
    });
}

/// The conversation: answers echo-off (and echo-on) prompts from the
/// queue, records every message.
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let result = std::panic::catch_unwind(|| {
        if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: appdata is the Conversation boxed in `Pam`, alive while the handle is.
        let state = unsafe { &*(appdata as *const Conversation) };
        let n = num_msg as usize;
        // SAFETY: libpam allocates with calloc and frees with free: so do we.
        let replies = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
        if replies.is_null() {
            return PAM_CONV_ERR;
        }
        for i in 0..n {
            // SAFETY: Linux-PAM passes an array of num_msg message pointers.
            let m = unsafe { &**msg.add(i) };
            let text = if m.msg.is_null() {
                String::new()
            } else {
                // SAFETY: message texts are NUL-terminated strings.
                unsafe { CStr::from_ptr(m.msg) }.to_string_lossy().into_owned()
            };
            state.prompts.lock().expect("lock").push(text);
            if m.msg_style == PAM_PROMPT_ECHO_OFF || m.msg_style == PAM_PROMPT_ECHO_ON {
                let Some(pw) = state.passwords.lock().expect("lock").pop_front() else {
                    for j in 0..i {
                        // SAFETY: frees the answers given so far (strdup'd below).
                        unsafe { libc::free((*replies.add(j)).resp.cast()) };
                    }
                    // SAFETY: allocated above with calloc.
                    unsafe { libc::free(replies.cast()) };
                    return PAM_CONV_ERR;
                };
                let c = CString::new(pw).expect("password without NUL");
                // SAFETY: replies has n slots; strdup gives libpam a malloc'd copy.
                unsafe { (*replies.add(i)).resp = libc::strdup(c.as_ptr()) };
            }
        }
        // SAFETY: resp is the out-pointer libpam gave us.
        unsafe { *resp = replies };
        PAM_SUCCESS
    });
    result.unwrap_or(PAM_CONV_ERR)
}

/// A directory of PAM service files plus the files a stack needs.
pub struct Confdir<'a> {
    pub dir: &'a Path,
}

impl<'a> Confdir<'a> {
    /// Uses (and creates) `dir` for service files.
    pub fn new(dir: &'a Path) -> Confdir<'a> {
        fs::create_dir_all(dir).expect("create confdir");
        Confdir { dir }
    }

    /// Writes the service file `name` with these lines.
    pub fn service(&self, name: &str, lines: &[String]) -> &Self {
        let path = self.dir.join(name);
        fs::write(&path, lines.join("\n") + "\n").expect("write service file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod service file");
        self
    }
}

/// Writes an executable password checker for `pam_exec.so expose_authtok`:
/// it appends one line to `log` per password it evaluates (the ground
/// truth of "reached the password module") and accepts only `right`.
pub fn write_password_checker(path: &Path, log: &Path, right: &str) {
    let script = format!(
        "#!/bin/sh\n# pam_exec writes the password followed by a NUL byte.\npw=$(tr -d '\\000')\necho \"${{PAM_RHOST:-local}} $PAM_USER\" >> '{}'\n[ \"$pw\" = '{}' ]\n",
        log.display(),
        right
    );
    fs::write(path, script).expect("write checker");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod checker");
}

/// The password-module lines of a stack: right password → the stack
/// succeeds, wrong → PAM_AUTH_ERR (Debian's common-auth shape, with
/// pam_exec in place of pam_unix).
pub fn password_lines(checker: &Path) -> Vec<String> {
    vec![
        format!("auth [success=1 default=ignore] pam_exec.so quiet expose_authtok {}", checker.display()),
        "auth requisite pam_deny.so".to_string(),
        "auth required pam_permit.so".to_string(),
    ]
}

/// A namespace whose /etc/pam.d is `root/pam.d` and whose /dev/log is
/// `log` (a tmpfs /dev with the few device nodes PAM programs need).
pub fn pam_namespace(root: &Path, log: &Path) -> Netns {
    let ns = Netns::new();
    ns.bind_mount(&root.join("pam.d"), Path::new("/etc/pam.d"));
    ns.run_ok(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev"]);
    for (name, minor) in [("null", "3"), ("zero", "5"), ("random", "8"), ("urandom", "9")] {
        ns.run_ok(["mknod", "-m", "666", &format!("/dev/{name}"), "c", "1", minor]);
    }
    ns.run_ok(["touch", "/dev/log"]);
    ns.bind_mount(log, Path::new("/dev/log"));
    ns
}

/// Runs pamtester in `ns` with `password` on stdin; returns (exit code, output).
pub fn pamtester(ns: &Netns, prefix: &[&str], args: &[&str], password: &str) -> (i32, String) {
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend(["pamtester", "-v"]);
    argv.extend(args);
    let mut child = ns
        .command(&argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
