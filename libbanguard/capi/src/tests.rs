//! Unit tests of the C ABI through the rlib: argument checks, error
//! mapping, panics, and that the header and pkg-config template agree with
//! the code. The real C program against the real `.so` is in
//! `tests/tests/e2e/capi.rs`.

use super::*;
use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn last_error(bg: *const Handle) -> String {
    // SAFETY: bg is NULL or a live handle of this test; the string is read at once.
    unsafe { CStr::from_ptr(banguard_last_error(bg)) }.to_string_lossy().into_owned()
}

struct Fixture {
    dir: tempfile::TempDir,
    config: CString,
    bg: *mut Handle,
}

impl Fixture {
    fn new(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db/banguard.db");
        let path = dir.path().join("banguard.toml");
        let text = format!(
            "[default]\ndatabase = {:?}\nmaxretry = 3\nignoreip = [\"203.0.113.0/24\"]\n\n\
             [sync]\ntrigger_file = {:?}\n{extra}",
            db.display().to_string(),
            dir.path().join("ban.trigger").display().to_string()
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let config = CString::new(path.to_str().unwrap()).unwrap();
        let mut bg = std::ptr::null_mut();
        // SAFETY: valid C string and out pointer.
        let rc = unsafe { banguard_open(config.as_ptr(), &mut bg) };
        assert_eq!(rc, BANGUARD_OK, "{}", last_error(std::ptr::null()));
        assert!(!bg.is_null());
        Fixture { dir, config, bg }
    }

    fn trigger(&self) -> PathBuf {
        self.dir.path().join("ban.trigger")
    }

    fn fail(&self, service: &CStr, addr: &CStr) -> c_int {
        // SAFETY: live handle, valid C strings.
        unsafe { banguard_record_failure(self.bg, service.as_ptr(), addr.as_ptr(), c"alice".as_ptr()) }
    }

    fn check(&self, service: &CStr, addr: &CStr) -> c_int {
        // SAFETY: live handle, valid C strings.
        unsafe { banguard_check(self.bg, service.as_ptr(), addr.as_ptr()) }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: opened by Fixture::new, closed once.
        unsafe { banguard_close(self.bg) };
    }
}

#[test]
fn failures_ban_on_the_maxretry_th_and_check_refuses() {
    let f = Fixture::new("");
    let ip = c"198.51.100.7";
    assert_eq!(f.check(c"myftpd", ip), BANGUARD_ALLOW);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    assert!(!f.trigger().exists());
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_DENY);
    assert_eq!(last_error(f.bg), "");
    assert!(f.trigger().exists(), "a new ban touches the sync trigger");
    assert_eq!(f.check(c"myftpd", ip), BANGUARD_DENY);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_DENY);
    // The same host written differently.
    assert_eq!(f.check(c"myftpd", c"::ffff:198.51.100.7"), BANGUARD_DENY);
    assert_eq!(f.check(c"myftpd", c" 198.51.100.7 "), BANGUARD_DENY);
    // Another service, another host: not banned.
    assert_eq!(f.check(c"otherd", ip), BANGUARD_ALLOW);
    assert_eq!(f.check(c"myftpd", c"198.51.100.8"), BANGUARD_ALLOW);
    // ignoreip: never counted.
    for _ in 0..5 {
        assert_eq!(f.fail(c"myftpd", c"203.0.113.9"), BANGUARD_ALLOW);
    }
    assert_eq!(f.check(c"myftpd", c"203.0.113.9"), BANGUARD_ALLOW);
    // SAFETY: live handle; NULL user is allowed.
    let rc = unsafe {
        banguard_record_success(f.bg, c"myftpd".as_ptr(), c"2001:db8::1".as_ptr(), std::ptr::null())
    };
    assert_eq!(rc, BANGUARD_OK);
}

#[test]
fn reset_on_success_forgets_failures() {
    let f = Fixture::new("\n[services.myftpd]\nreset_on_success = true\n");
    let ip = c"[2001:db8::7]";
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    // SAFETY: live handle, valid C strings.
    let rc = unsafe { banguard_record_success(f.bg, c"myftpd".as_ptr(), ip.as_ptr(), c"alice".as_ptr()) };
    assert_eq!(rc, BANGUARD_OK, "{}", last_error(f.bg));
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_ALLOW);
    assert_eq!(f.fail(c"myftpd", ip), BANGUARD_DENY);
    // IPv6 is counted per /64 by default.
    assert_eq!(f.check(c"myftpd", c"2001:db8::8"), BANGUARD_DENY);
    assert_eq!(f.check(c"myftpd", c"2001:db8:0:1::8"), BANGUARD_ALLOW);
}

#[test]
fn bad_arguments_are_einval_with_a_message() {
    let f = Fixture::new("");
    let cases: [(&CStr, &CStr, &str); 8] = [
        (c"myftpd", c"not-an-ip", "not-an-ip"),
        (c"myftpd", c"host.example", "not an IPv4 or IPv6 address literal"),
        (c"myftpd", c"", "not an IPv4 or IPv6"),
        (c"myftpd", c"198.51.100.0/24", "198.51.100.0/24"),
        (c"", c"198.51.100.7", "invalid PAM service name \"\""),
        (c"*", c"198.51.100.7", "invalid PAM service name \"*\""),
        (c"ftp\nd", c"198.51.100.7", "invalid PAM service name \"ftp\\nd\""),
        (c"../../etc", c"198.51.100.7", "invalid PAM service name"),
    ];
    for (service, addr, want) in cases {
        assert_eq!(f.check(service, addr), BANGUARD_EINVAL, "{service:?} {addr:?}");
        let msg = last_error(f.bg);
        assert!(msg.contains(want), "{service:?} {addr:?}: {msg}");
        assert_eq!(f.fail(service, addr), BANGUARD_EINVAL);
    }
    // Non-UTF-8.
    assert_eq!(f.check(c"myftpd", c"\xff198.51.100.7"), BANGUARD_EINVAL);
    assert!(last_error(f.bg).contains("not valid UTF-8"));
    // A success clears the handle's message.
    assert_eq!(f.check(c"myftpd", c"198.51.100.7"), BANGUARD_ALLOW);
    assert_eq!(last_error(f.bg), "");
    // NULLs.
    // SAFETY: NULL pointers are part of the contract.
    unsafe {
        assert_eq!(banguard_check(f.bg, std::ptr::null(), c"198.51.100.7".as_ptr()), BANGUARD_EINVAL);
        assert_eq!(last_error(f.bg), "service is NULL");
        assert_eq!(banguard_check(f.bg, c"myftpd".as_ptr(), std::ptr::null()), BANGUARD_EINVAL);
        assert_eq!(last_error(f.bg), "client_addr is NULL");
        let rc = banguard_check(std::ptr::null_mut(), c"myftpd".as_ptr(), c"198.51.100.7".as_ptr());
        assert_eq!(rc, BANGUARD_EINVAL);
        assert!(last_error(std::ptr::null()).contains("handle is NULL"));
        assert_eq!(banguard_open(f.config.as_ptr(), std::ptr::null_mut()), BANGUARD_EINVAL);
        assert_eq!(banguard_ctl(std::ptr::null(), c"198.51.100.7".as_ptr()), BANGUARD_EINVAL);
        assert_eq!(banguard_ctl(c"sshd".as_ptr(), c"not-an-ip".as_ptr()), BANGUARD_EINVAL);
        assert!(last_error(std::ptr::null()).contains("not-an-ip"));
        banguard_close(std::ptr::null_mut());
    }
}

#[test]
fn open_errors_say_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let cpath = CString::new(missing.to_str().unwrap()).unwrap();
    let mut bg = std::ptr::NonNull::<Handle>::dangling().as_ptr();
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { banguard_open(cpath.as_ptr(), &mut bg) }, BANGUARD_ECONFIG);
    assert!(bg.is_null(), "out is set to NULL on failure");
    let msg = last_error(std::ptr::null());
    assert!(msg.contains(missing.to_str().unwrap()), "{msg}");

    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[default]\nmaxretry = \"many\"\n").unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o644)).unwrap();
    let cbad = CString::new(bad.to_str().unwrap()).unwrap();
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { banguard_open(cbad.as_ptr(), &mut bg) }, BANGUARD_ECONFIG);
    let msg = last_error(std::ptr::null());
    assert!(msg.contains("bad.toml:2"), "{msg}");

    fs::set_permissions(&bad, fs::Permissions::from_mode(0o666)).unwrap();
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { banguard_open(cbad.as_ptr(), &mut bg) }, BANGUARD_EINSECURE);
    assert!(last_error(std::ptr::null()).contains("chmod go-w"));

    // The store's directory cannot be created: a file is in the way.
    let good = dir.path().join("good.toml");
    fs::write(dir.path().join("file"), "").unwrap();
    let db = dir.path().join("file/banguard.db");
    fs::write(&good, format!("[default]\ndatabase = {:?}\n", db.to_str().unwrap())).unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
    let cgood = CString::new(good.to_str().unwrap()).unwrap();
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { banguard_open(cgood.as_ptr(), &mut bg) }, BANGUARD_ESTORE);
    let msg = last_error(std::ptr::null());
    assert!(msg.contains(dir.path().join("file").to_str().unwrap()), "{msg}");
    assert!(msg.contains("is not a directory"), "{msg}");
    assert!(bg.is_null());
}

#[test]
fn error_kinds_map_to_codes() {
    let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let p = PathBuf::from("/x");
    let cases = [
        (Error::ConfigRead { path: p.clone(), source: io() }, Stage::Store, BANGUARD_ECONFIG),
        (
            Error::Config { path: p.clone(), line: Some(1), key: None, message: "m".into() },
            Stage::Store,
            BANGUARD_ECONFIG,
        ),
        (Error::Insecure { path: p.clone(), message: "m".into() }, Stage::Config, BANGUARD_EINSECURE),
        (
            Error::InvalidInput { what: "w", value: "v".into(), message: "m".into() },
            Stage::Store,
            BANGUARD_EINVAL,
        ),
        (Error::Store { path: p.clone(), message: "m".into(), source: None }, Stage::Config, BANGUARD_ESTORE),
        (Error::SchemaTooNew { path: p.clone(), found: 9, supported: 1 }, Stage::Config, BANGUARD_ESTORE),
        (Error::Io { path: p.clone(), source: io() }, Stage::Config, BANGUARD_ECONFIG),
        (Error::Io { path: p, source: io() }, Stage::Store, BANGUARD_ESTORE),
    ];
    for (e, stage, code) in cases {
        assert_eq!(code_of(&e, stage), code, "{e} at {stage:?}");
    }
}

#[test]
fn panics_become_epanic_and_the_handle_survives() {
    let f = Fixture::new("");
    // SAFETY: live handle.
    let rc = unsafe { with_handle(f.bg, |_| panic!("boom {}", 42)) };
    assert_eq!(rc, BANGUARD_EPANIC);
    let msg = last_error(f.bg);
    assert!(msg.starts_with("internal error in libbanguard"), "{msg}");
    assert!(msg.contains("boom 42") && msg.contains("tests.rs"), "{msg}");
    // The lock was poisoned by the panic; the handle still works.
    assert_eq!(f.check(c"myftpd", c"198.51.100.7"), BANGUARD_ALLOW);
    assert_eq!(last_error(f.bg), "");

    assert_eq!(guard(|| panic!("static message")), BANGUARD_EPANIC);
    assert!(last_error(std::ptr::null()).contains("static message"));
    // Panics outside calls still reach the previous hook (not silenced).
    assert!(!IN_CALL.with(Cell::get));
}

#[test]
fn strerror_covers_every_code() {
    for code in -10..=10 {
        let p = banguard_strerror(code);
        assert!(!p.is_null());
        // SAFETY: static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
        assert!(!s.is_empty());
        if !(BANGUARD_EPANIC..=BANGUARD_ALLOW).contains(&code) {
            assert_eq!(s, "unknown banguard result code");
        } else {
            assert_ne!(s, "unknown banguard result code", "{code}");
        }
    }
}

/// `#define NAME value` lines of the header.
fn header_defines() -> Vec<(String, String)> {
    let h = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/banguard.h")).unwrap();
    h.lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_string(), v.trim().trim_start_matches('(').trim_end_matches(')').to_string()))
        .collect()
}

#[test]
fn header_matches_the_code() {
    let defines = header_defines();
    let get = |name: &str| -> c_int {
        let v = &defines.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in header")).1;
        v.parse().unwrap_or_else(|_| panic!("{name} = {v}"))
    };
    let codes = [
        ("BANGUARD_ALLOW", BANGUARD_ALLOW),
        ("BANGUARD_DENY", BANGUARD_DENY),
        ("BANGUARD_OK", BANGUARD_OK),
        ("BANGUARD_EINVAL", BANGUARD_EINVAL),
        ("BANGUARD_ECONFIG", BANGUARD_ECONFIG),
        ("BANGUARD_EINSECURE", BANGUARD_EINSECURE),
        ("BANGUARD_ESTORE", BANGUARD_ESTORE),
        ("BANGUARD_EPANIC", BANGUARD_EPANIC),
    ];
    for (name, value) in codes {
        assert_eq!(get(name), value, "{name}");
    }
    let version = get("BANGUARD_VERSION_MAJOR") * 10_000
        + get("BANGUARD_VERSION_MINOR") * 100
        + get("BANGUARD_VERSION_PATCH");
    assert_eq!(version, banguard_version(), "bump the BANGUARD_VERSION_* defines with the crate version");
    // The exported functions are the ones the header declares.
    let header = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/banguard.h")).unwrap();
    let src = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let exported: Vec<&str> = src
        .split("extern \"C\" fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("banguard_"))
        .collect();
    assert_eq!(exported.len(), 10, "{exported:?}");
    for name in exported {
        let declared = [' ', '*'].iter().any(|c| header.contains(&format!("{c}{name}(")));
        assert!(declared, "{name} is not declared in banguard.h");
    }
}

#[test]
fn pkg_config_template_matches() {
    let pc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/banguard.pc.in")).unwrap();
    assert!(pc.contains(&format!("\nVersion: {}\n", env!("CARGO_PKG_VERSION"))), "{pc}");
    for key in ["@PREFIX@", "@LIBDIR@", "@INCLUDEDIR@", "-lbanguard"] {
        assert!(pc.contains(key), "{key}");
    }
}

#[test]
fn a_message_read_in_one_thread_survives_calls_in_another() {
    let f = Fixture::new("");
    struct Shared(*mut Handle);
    // SAFETY: the header allows sharing a handle between threads (calls on
    // it are serialised inside); the test keeps it alive for both.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}
    let bg = Shared(f.bg);
    let bg = &bg;
    // SAFETY: live handle, valid C strings.
    assert_eq!(unsafe { banguard_check(bg.0, c"myftpd".as_ptr(), c"bogus".as_ptr()) }, BANGUARD_EINVAL);
    // SAFETY: live handle; the pointer is this thread's copy.
    let mine = unsafe { banguard_last_error(bg.0) };
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..200 {
                let addr = if i % 2 == 0 { c"also-bogus" } else { c"198.51.100.9" };
                // SAFETY: live handle, valid C strings.
                let _ = unsafe { banguard_check(bg.0, c"myftpd".as_ptr(), addr.as_ptr()) };
            }
            assert_eq!(last_error(bg.0), "", "this thread's own last call succeeded");
        });
    });
    // SAFETY: this thread made no call on the handle since reading `mine`.
    let text = unsafe { CStr::from_ptr(mine) }.to_string_lossy().into_owned();
    assert!(text.contains("\"bogus\""), "{text}");
    assert_eq!(last_error(f.bg), text);
}
