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
