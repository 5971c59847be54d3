//! The few libc calls the core needs that std does not offer.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// The real user id of this process.
pub fn real_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Keeps the shared object that contains this code loaded until the process
/// ends, even if its loader (libpam, at `pam_end`) unloads it: a thread of
/// ours that is still blocked in the kernel must find its code when it
/// wakes. True when it is pinned (in a plain executable: the executable).
pub fn keep_this_object_loaded() -> bool {
    let here = keep_this_object_loaded as *const libc::c_void;
    // SAFETY: Dl_info is plain data that dladdr fills in; a zeroed value is
    // a valid initial state.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `here` is an address inside this object and `info` is a valid
    // out-pointer for the duration of the call.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader. With
    // RTLD_NOLOAD nothing new is loaded; RTLD_NODELETE marks the object as
    // never to be unloaded. The handle is deliberately never closed.
    let pinned =
        !unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) }
            .is_null();
    // The program itself (banguardctl, a test) is never unloaded; the
    // loader does not find it by its path.
    // SAFETY: dli_fname is NUL-terminated and outlives this call.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    pinned || {
        use std::os::unix::ffi::OsStrExt;
        let object = std::path::Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
        std::env::current_exe().ok().zip(std::fs::canonicalize(object).ok()).is_some_and(|(exe, o)| exe == o)
    }
}

/// File descriptors a forked child closes before it returns from `fork`
/// (-1: a free slot). Atomics only: the child's handler must not lock.
static CLOSE_IN_CHILD: [AtomicI32; 8] = [const { AtomicI32::new(-1) }; 8];

/// Runs in the child of every `fork` of this process, before `fork`
/// returns there.
extern "C" fn close_listed_in_child() {
    for slot in &CLOSE_IN_CHILD {
        let fd = slot.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: fd was open in the parent at the fork (it is removed
            // from the list before the parent closes it), so in the child
            // it is the same open file, which nothing else here uses.
            unsafe { libc::close(fd) };
        }
    }
}

/// Has every future child of `fork` close `fd` at once (a process that
/// forks to drop privileges must not inherit it). The object holding this
/// code must have been pinned ([`keep_this_object_loaded`]): the handler
/// stays registered for the life of the process. False when the handler
/// cannot be registered or the list is full.
pub fn close_in_forked_children(fd: RawFd) -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: the handler is an extern "C" fn of this pinned object that
    // only swaps atomics and calls close.
    let registered = *REGISTERED
        .get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(close_listed_in_child)) } == 0);
    registered
        && CLOSE_IN_CHILD
            .iter()
            .any(|slot| slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

/// Takes `fd` off the list, before it is closed (its number may be reused).
pub fn forget_in_forked_children(fd: RawFd) {
    for slot in &CLOSE_IN_CHILD {
        let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Bytes free on the file system holding `path` (for root, who may use the
/// blocks reserved for it), or `None` when it cannot be asked.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = if path.is_dir() { path } else { path.parent().filter(|d| !d.as_os_str().is_empty())? };
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zeroed is a valid value to fill in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let blocks = if effective_uid() == 0 { st.f_bfree } else { st.f_bavail };
    Some(blocks as u64 * st.f_frsize as u64)
}

/// A moment in the machine's local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// Seconds east of UTC.
    pub offset: i64,
}

/// `t` (unix seconds) in the local time zone (glibc reads TZ and
/// /etc/localtime), or `None` when libc cannot say.
pub fn local_time(t: i64) -> Option<LocalTime> {
    // SAFETY: `tm` is plain old data, for which all-zero bytes are a valid
    // value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let tt = t as libc::time_t;
    // SAFETY: localtime_r reads `tt` and writes only into the `tm` we own.
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return None;
    }
    Some(LocalTime {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        min: tm.tm_min as u32,
        sec: tm.tm_sec as u32,
        offset: tm.tm_gmtoff,
    })
}

/// Names this process in its syslog lines (`ident[pid]:`) and sets their
/// facility. Without a syslog daemon the lines are dropped, as libc does.
pub fn open_syslog(ident: &'static std::ffi::CStr, facility: libc::c_int) {
    // SAFETY: ident is 'static, as openlog keeps the pointer; the flags and
    // facility are plain values.
    unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, facility) }
}

/// Sends one line to syslog at `priority` (a level, optionally or'ed with a
/// facility). Control characters become spaces, so no line can forge
/// another; an interior NUL cannot cut it short.
pub fn syslog(priority: libc::c_int, message: &str) {
    let Ok(line) = std::ffi::CString::new(one_line(message)) else { return };
    // SAFETY: constant "%s" format with exactly one NUL-terminated argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) }
}

/// A syslog line holds no control characters (no forged second line, no
/// NUL to cut it short).
fn one_line(message: &str) -> String {
    message.chars().map(|c| if crate::text::is_unsafe(c) { ' ' } else { c }).collect()
}

/// Whether SELinux is enforcing on this machine (`/sys/fs/selinux/enforce`
/// reads `1`; a file only the kernel provides).
pub fn selinux_enforcing() -> bool {
    std::fs::read("/sys/fs/selinux/enforce").is_ok_and(|v| v.first() == Some(&b'1'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_cannot_be_forged() {
        assert_eq!(one_line("a\nJan 1 x sshd[1]: ok\r\0b"), "a Jan 1 x sshd[1]: ok  b");
    }

    #[test]
    fn local_time_agrees_with_its_own_offset() {
        // Whatever zone is in force (TZ is not changed here: other tests
        // run in parallel), the fields are t shifted by the offset.
        let t = 1_800_000_000;
        let l = local_time(t).expect("localtime_r");
        let shifted = t + l.offset;
        let (year, month, day) = crate::duration::civil_from_days(shifted.div_euclid(86_400));
        let secs = shifted.rem_euclid(86_400);
        assert_eq!((l.year, l.month, l.day), (year, month, day));
        assert_eq!(i64::from(l.hour * 3600 + l.min * 60 + l.sec), secs);
    }
}
