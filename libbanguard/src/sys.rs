//! The few libc calls the core needs that std does not offer.
#![allow(unsafe_code)]

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
/// wakes. Best effort; in a plain executable it does nothing.
pub fn keep_this_object_loaded() {
    let here = keep_this_object_loaded as *const libc::c_void;
    // SAFETY: Dl_info is plain data that dladdr fills in; a zeroed value is
    // a valid initial state.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `here` is an address inside this object and `info` is a valid
    // out-pointer for the duration of the call.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader. With
    // RTLD_NOLOAD nothing new is loaded; RTLD_NODELETE marks the object as
    // never to be unloaded. The handle is deliberately never closed.
    unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE) };
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
    message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
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
