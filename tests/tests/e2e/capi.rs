//! libbanguard.so as a C program sees it: compiled with cc against
//! `banguard.h`, linked with `-lbanguard` (directly and through
//! pkg-config), run against a real config and store; plus the library's
//! exports and SONAME.

use banguard::{Banguard, Config, Request};
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::{artifacts, require};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/capi/check.c");

/// The functions banguard.h declares.
const API: [&str; 10] = [
    "banguard_check",
    "banguard_check_user",
    "banguard_close",
    "banguard_ctl",
    "banguard_last_error",
    "banguard_open",
    "banguard_record_failure",
    "banguard_record_success",
    "banguard_strerror",
    "banguard_version",
];

/// A temp dir with `lib/libbanguard.so{,.0}` pointing at the built library,
/// a config (mode 0644, maxretry 3, ignoreip 203.0.113.0/24) and a store
/// path inside it.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env { dir };
        fs::create_dir(env.lib_dir()).unwrap();
        for name in ["libbanguard.so", "libbanguard.so.0"] {
            symlink(&artifacts().capi_lib, env.lib_dir().join(name)).unwrap();
        }
        ConfigFile::under(env.dir.path())
            .with("maxretry = 3\nfindtime = \"10m\"\nignoreip = [\"127.0.0.1/8\", \"203.0.113.0/24\"]")
            .write(&env.config());
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn lib_dir(&self) -> PathBuf {
        self.path("lib")
    }

    fn config(&self) -> PathBuf {
        self.path("banguard.toml")
    }

    /// Compiles the fixture with `cc -Wall -Wextra -Werror` and `flags`.
    fn compile(&self, out: &str, flags: &[String]) -> PathBuf {
        let exe = self.path(out);
        let result = Command::new("cc")
            .args(["-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
            .arg(&exe)
            .arg(FIXTURE)
            .args(flags)
            .arg(format!("-Wl,-rpath,{}", self.lib_dir().display()))
            .output()
            .expect("run cc");
        assert_success("cc", &result);
        exe
    }

    /// Compiles with the plain flags a Makefile would use.
    fn compile_direct(&self) -> PathBuf {
        let flags = [
            format!("-I{}", artifacts().include_dir.display()),
            format!("-L{}", self.lib_dir().display()),
            "-lbanguard".to_string(),
        ];
        self.compile("check", &flags)
    }
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn c_program_gets_real_answers() {
    if !require("c_program_gets_real_answers", false, &["cc", "readelf"]) {
        return;
    }
    let env = Env::new();
    let exe = env.compile_direct();

    // The program needs libbanguard.so.0 (the SONAME), found through its rpath.
    let needed = Command::new("readelf").arg("-d").arg(&exe).output().expect("run readelf");
    assert!(stdout(&needed).contains("Shared library: [libbanguard.so.0]"), "{}", stdout(&needed));

    let missing = env.path("no-such-dir/banguard.toml");
    let run = Command::new(&exe).arg("scenario").arg(env.config()).arg(&missing).output().unwrap();
    let text = stdout(&run);
    assert_success("check scenario", &run);
    assert!(!text.contains("FAIL"), "{text}");
    // Spot checks of the answers (the program checks every one).
    for line in [
        "ok failure 1 = 1\n",
        "ok failure 2 = 1\n",
        "ok failure 3 = 0\n",
        "ok check banned = 0\n",
        "ok check other address = 1\n",
        "ok check ignored = 1\n",
        "ok check NULL service = -1\n",
        "ok check not-an-ip = -1\n",
        "ok open missing config = -2\n",
        "ok thread failure 3 = 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains(&format!("open error: cannot read config {}", missing.display())), "{text}");
    assert!(text.contains("strerror(-5) = internal error in libbanguard"), "{text}");
    // Nothing on stderr: the library never prints into the host process.
    assert!(run.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&run.stderr));

    // The bans are in the store, where pam_banguard and banguardctl see them.
    let config = Config::load(&env.config()).unwrap();
    let mut engine = Banguard::open(config).unwrap();
    for (addr, banned) in [("198.51.100.7", true), ("2001:db8:3::1", true), ("198.51.100.8", false)] {
        let req = Request { service: "myftpd", rhost: Some(addr), ..Request::default() };
        assert_eq!(engine.peek(&req).unwrap().is_refused(), banned, "{addr}");
    }
    assert!(env.path("run/ban.trigger").exists(), "a ban touches the sync trigger file");
}

/// The account side through the C ABI: a C daemon that reports its
/// failures and successes with the user gets password spraying bounded,
/// and the account's familiar networks are never refused.
#[test]
fn c_program_gets_the_account_side() {
    if !require("c_program_gets_the_account_side", false, &["cc"]) {
        return;
    }
    let env = Env::new();
    ConfigFile::under(env.dir.path())
        .with("maxretry = 3\nfindtime = \"10m\"\n[accounts]\nlearning = 0\nbudget = 2")
        .write(&env.config());
    let exe = env.compile_direct();
    let run = Command::new(&exe).arg("accounts").arg(env.config()).output().unwrap();
    let text = stdout(&run);
    assert_success("check accounts", &run);
    assert!(
        text.contains("ok check_user unfamiliar = 0\n") && text.contains("ok check_user familiar = 1\n"),
        "{text}"
    );
    let config = Config::load(&env.config()).unwrap();
    let engine = Banguard::open(config).unwrap();
    let locks = engine.account_locks(Some("ops"), true).unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(engine.familiar(Some("ops")).unwrap()[0].net, "198.51.100.0/24");
    assert!(engine.bans(None, false).unwrap().is_empty(), "no host banned for one try");
}

#[test]
fn library_exports_only_banguard_symbols_and_has_soname() {
    if !require("library_exports_only_banguard_symbols_and_has_soname", false, &["nm", "readelf"]) {
        return;
    }
    let lib = &artifacts().capi_lib;
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(lib).output().expect("run nm");
    assert_success("nm", &out);
    let mut names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        // `nm` shows version nodes as absolute symbols, if there are any.
        .filter(|name| !name.starts_with("BANGUARD_"))
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, API, "exported symbols of {}", lib.display());

    let out = Command::new("readelf").arg("-d").arg(lib).output().expect("run readelf");
    assert_success("readelf", &out);
    let text = stdout(&out);
    assert!(text.contains("Library soname: [libbanguard.so.0]"), "{text}");
    // The bundled SQLite is inside, not a dependency.
    assert!(!text.contains("libsqlite3"), "{text}");
}

#[test]
fn pkg_config_file_builds_a_program() {
    if !require("pkg_config_file_builds_a_program", false, &["cc", "pkg-config"]) {
        return;
    }
    let env = Env::new();
    let template =
        fs::read_to_string(banguard_e2e::workspace_root().join("libbanguard/capi/banguard.pc.in")).unwrap();
    let pc = template
        .replace("@PREFIX@", env.dir.path().to_str().unwrap())
        .replace("@LIBDIR@", env.lib_dir().to_str().unwrap())
        .replace("@INCLUDEDIR@", artifacts().include_dir.to_str().unwrap());
    assert!(!pc.contains('@'), "unfilled placeholder in:\n{pc}");
    let pc_dir = env.path("pkgconfig");
    fs::create_dir(&pc_dir).unwrap();
    fs::write(pc_dir.join("banguard.pc"), pc).unwrap();

    let pkg_config = |args: &[&str]| {
        let out = Command::new("pkg-config").args(args).env("PKG_CONFIG_PATH", &pc_dir).output().unwrap();
        assert_success("pkg-config", &out);
        stdout(&out).trim().to_string()
    };
    assert_eq!(pkg_config(&["--modversion", "banguard"]), env!("CARGO_PKG_VERSION"));
    let flags: Vec<String> =
        pkg_config(&["--cflags", "--libs", "banguard"]).split_whitespace().map(str::to_string).collect();
    assert!(flags.contains(&"-lbanguard".to_string()), "{flags:?}");
    let exe = env.compile("check-pc", &flags);

    // A call that is refused before any file is opened: links, loads, answers.
    let out = Command::new(&exe).args(["ctl", "sshd", "not-an-ip"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("= -1 (invalid argument)"), "{}", stdout(&out));
    let missing = env.path("missing.toml");
    let out = Command::new(&exe).arg("scenario").arg(env.config()).arg(&missing).output().unwrap();
    assert_success("check scenario (pkg-config build)", &out);
}

/// Runs `check ctl SERVICE ADDR` in a private mount namespace whose /etc is
/// an overlay holding `/etc/banguard/banguard.toml` = `config` at `mode`:
/// banguard_ctl() reads the real default path, and the host's /etc stays
/// untouched.
fn ctl_with_default_config(env: &Env, exe: &Path, config: &Path, mode: &str, addr: &str) -> Output {
    let overlay = env.path("overlay");
    fs::create_dir_all(&overlay).unwrap();
    let script = r#"
        mount -t tmpfs tmpfs "$1"
        mkdir "$1/up" "$1/work"
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/up,workdir=$1/work" /etc
        mkdir -p /etc/banguard
        cp "$2" /etc/banguard/banguard.toml
        chmod "$3" /etc/banguard/banguard.toml
        exec "$4" ctl myftpd "$5"
    "#;
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", script, "sh"])
        .arg(&overlay)
        .arg(config)
        .arg(mode)
        .arg(exe)
        .arg(addr)
        .output()
        .expect("run unshare")
}

#[test]
fn ctl_answers_from_the_default_config() {
    if !require("ctl_answers_from_the_default_config", true, &["cc", "unshare", "mount"]) {
        return;
    }
    let host_had_dir = Path::new("/etc/banguard").exists();
    let env = Env::new();
    let exe = env.compile_direct();
    // Ban 198.51.100.7 on myftpd through the core, as pam_banguard would.
    {
        let mut engine = Banguard::open(Config::load(&env.config()).unwrap()).unwrap();
        let req = Request { service: "myftpd", rhost: Some("198.51.100.7"), ..Request::default() };
        for _ in 0..3 {
            engine.record_failure(&req).unwrap();
        }
        assert!(engine.peek(&req).unwrap().is_refused());
    }
    let cases = [
        ("198.51.100.7", "0644", "= 0 (denied"),
        ("198.51.100.8", "0644", "= 1 (allowed)"),
        ("203.0.113.1", "0644", "= 1 (allowed)"),
        ("198.51.100.7", "0666", "= -3 (refused"),
    ];
    for (addr, mode, want) in cases {
        let out = ctl_with_default_config(&env, &exe, &env.config(), mode, addr);
        let text = stdout(&out);
        assert!(
            text.contains(want),
            "ctl {addr} with mode {mode}: want {want:?}, got:\n{text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ctl_with_default_config(&env, &exe, &env.config(), "0666", "198.51.100.7");
    assert!(stdout(&out).contains("/etc/banguard/banguard.toml"), "{}", stdout(&out));
    assert_eq!(Path::new("/etc/banguard").exists(), host_had_dir, "the host's /etc was changed");
}
