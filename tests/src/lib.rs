//! Shared harness for banguard's end-to-end tests.
//!
//! * [`Netns`]: a throwaway network + mount + PID namespace. Every process
//!   started in it dies with it (the namespace's init is killed on drop, and
//!   the kernel then kills everything else in the PID namespace), so a failed
//!   test never leaves a namespace, a bind mount or a firewall rule behind.
//! * [`artifacts`]: paths of the built `pam_banguard.so`, `libbanguard.so`
//!   and `banguardctl`, building them once if needed.
//! * [`require`]: prerequisites. In CI (`CI=true`) a missing one fails the
//!   test; elsewhere the test is skipped with a loud message.

pub mod crowdsec;
pub mod dovecot;
pub mod fail2ban;
pub mod fixture;
pub mod pamtest;
pub mod pathunit;
pub mod sshd;
pub mod vsftpd;

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// True when running under CI, where skipping is not allowed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether the process runs as root (real uid 0).
pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Checks prerequisites for an end-to-end test.
///
/// Returns `false` (and prints a loud SKIP line) when something is missing
/// outside CI; panics when something is missing in CI.
#[must_use]
pub fn require(test: &str, need_root: bool, programs: &[&str]) -> bool {
    let mut missing = Vec::new();
    if need_root && !is_root() {
        missing.push("root".to_string());
    }
    for p in programs {
        if find_program(p).is_none() {
            missing.push(format!("program `{p}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: a missing prerequisite is a failure; .ci/run installs them)");
    }
    eprintln!("\n!!!!!!!! SKIPPED {msg} (run as root with the packages from .ci/run) !!!!!!!!\n");
    note_skipped(&msg);
    false
}

/// Where skipped tests are listed for `make test`'s summary (libtest can
/// only call them "ok"): `<target>/e2e-skipped.txt`.
pub fn skipped_list() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<binary>
    Some(exe.parent()?.parent()?.parent()?.join("e2e-skipped.txt"))
}

fn note_skipped(msg: &str) {
    if let Some(path) = skipped_list() {
        let line = format!("{msg}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

/// The `main` of a bench binary (`harness = false`): runs the benchmarks
/// whose names contain one of the command line's words, all of them
/// without one; cargo's own flags (`--bench`) are ignored.
pub fn run_benches(benches: &[(&str, fn())]) {
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut ran = 0;
    for (name, bench) in benches {
        if words.is_empty() || words.iter().any(|w| name.contains(w.as_str())) {
            eprintln!("running {name}");
            bench();
            ran += 1;
        }
    }
    let names: Vec<&str> = benches.iter().map(|b| b.0).collect();
    assert!(ran > 0, "no benchmark matches {words:?}; there are {names:?}");
}

/// Finds a program on PATH, also looking in the sbin directories, which are
/// not on a non-root PATH on Debian.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Paths of the workspace's built artifacts.
pub struct Artifacts {
    pub target_dir: PathBuf,
    pub pam_module: PathBuf,
    pub capi_lib: PathBuf,
    pub banguardctl: PathBuf,
    pub include_dir: PathBuf,
}

/// Environment variable naming a directory of prebuilt artifacts to test
/// instead of the current profile's (`make test` runs the PAM stack tests
/// again with the glibc 2.28 build this way).
pub const ARTIFACTS_ENV: &str = "BANGUARD_TEST_ARTIFACTS";

/// Locates (building once if needed) the artifacts of the current profile.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        if let Some(dir) = std::env::var_os(ARTIFACTS_ENV) {
            let dir = PathBuf::from(dir);
            let a = Artifacts {
                pam_module: dir.join("libpam_banguard.so"),
                capi_lib: dir.join("libbanguard_capi.so"),
                banguardctl: dir.join("banguardctl"),
                include_dir: workspace_root().join("libbanguard/capi/include"),
                target_dir: dir,
            };
            for p in [&a.pam_module, &a.capi_lib, &a.banguardctl] {
                assert!(p.exists(), "{ARTIFACTS_ENV}: {} does not exist", p.display());
            }
            return a;
        }
        // target/<profile>/deps/<test-binary>: the profile dir is two up.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        let profile = profile_dir.file_name().and_then(OsStr::to_str).unwrap_or("debug").to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "pam_banguard", "-p", "banguardctl", "-p", "banguard-capi"])
            .current_dir(workspace_root());
        if profile == "release" {
            build.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        let status = build.status().expect("run cargo build for the artifacts");
        assert!(status.success(), "cargo build of the artifacts failed");
        let a = Artifacts {
            pam_module: profile_dir.join("libpam_banguard.so"),
            capi_lib: profile_dir.join("libbanguard_capi.so"),
            banguardctl: profile_dir.join("banguardctl"),
            include_dir: workspace_root().join("libbanguard/capi/include"),
            target_dir: profile_dir,
        };
        for p in [&a.pam_module, &a.capi_lib, &a.banguardctl] {
            assert!(p.exists(), "{} was not built", p.display());
        }
        a
    })
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A throwaway network + mount + PID namespace, removed on drop.
///
/// Created with `unshare --net --mount --pid --fork --kill-child`, holding
/// an init process (`sleep`). Commands run in it through `nsenter`. Mounts
/// made inside (e.g. a bind mount over /etc/pam.d) are private to it. The
/// host's own network, firewall and mounts are never touched.
pub struct Netns {
    unshare: Child,
    init_pid: u32,
    children: Vec<Child>,
}

impl Netns {
    /// Creates the namespace with `lo` up.
    pub fn new() -> Netns {
        let unshare = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--mount-proc",
                "sleep",
                "100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start unshare (util-linux)");
        let mut ns = Netns { init_pid: 0, unshare, children: Vec::new() };
        ns.init_pid = wait_for(Duration::from_secs(5), || child_pid_of(ns.unshare.id()))
            .expect("unshare's namespace init did not start");
        // The child exists before it has entered its namespaces' final
        // state (mount-proc); wait until it execs sleep.
        wait_for(Duration::from_secs(5), || {
            let comm = fs::read_to_string(format!("/proc/{}/comm", ns.init_pid)).ok()?;
            (comm.trim() == "sleep").then_some(())
        })
        .expect("namespace init did not exec");
        ns.run_ok(["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The pid (in the host's view) of the namespace's init process.
    pub fn init_pid(&self) -> u32 {
        self.init_pid
    }

    /// A command that runs inside the namespace.
    pub fn command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("nsenter");
        c.arg("--target").arg(self.init_pid.to_string()).args(["--net", "--mount", "--pid", "--"]);
        c.args(argv);
        c
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn run<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(argv).stdin(Stdio::null()).output().expect("run nsenter")
    }

    /// Runs a command inside the namespace and panics with its output if it fails.
    pub fn run_ok<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<_> = argv.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let out = self.run(&argv);
        assert!(
            out.status.success(),
            "in netns: {:?} failed ({}):\nstdout: {}\nstderr: {}",
            argv,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts a long-running process inside the namespace; it is killed on drop
    /// (and by the kernel when the namespace's init dies).
    pub fn spawn(&mut self, mut cmd: Command) -> &mut Child {
        let child = cmd.stdin(Stdio::null()).spawn().expect("spawn in netns");
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Adds an address to `lo` inside the namespace (e.g. "127.0.0.2/8" or
    /// "2001:db8::2/128"), for attacker source addresses.
    pub fn add_lo_addr(&self, cidr: &str) {
        let mut argv = vec!["ip"];
        if cidr.contains(':') {
            argv.push("-6");
        }
        argv.extend(["addr", "add", cidr, "dev", "lo"]);
        if cidr.contains(':') {
            argv.push("nodad");
        }
        self.run_ok(argv);
    }

    /// Adds many addresses to the namespace's lo at once (`ip -batch`):
    /// IPv4 ones as /32, IPv6 ones as /128 without duplicate detection.
    pub fn add_lo_addrs(&self, addrs: &[String]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let batch = dir.path().join("addrs.batch");
        let lines: String = addrs
            .iter()
            .map(|a| {
                if a.contains(':') {
                    format!("addr add {a}/128 dev lo nodad\n")
                } else {
                    format!("addr add {a}/32 dev lo\n")
                }
            })
            .collect();
        std::fs::write(&batch, lines).expect("write ip batch");
        self.run_ok([OsStr::new("ip"), OsStr::new("-batch"), batch.as_os_str()]);
    }

    /// Bind-mounts `src` over `dst` inside the namespace only.
    pub fn bind_mount(&self, src: &Path, dst: &Path) {
        self.run_ok([OsStr::new("mount"), OsStr::new("--bind"), src.as_os_str(), dst.as_os_str()]);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Killing the PID namespace's init makes the kernel kill every other
        // process in it, which releases the network and mount namespaces.
        if self.init_pid != 0 {
            // SAFETY: kill(2) with a pid we started; at worst ESRCH.
            unsafe { libc::kill(self.init_pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn child_pid_of(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a TCP port accepts connections inside the namespace
/// (`ss -ltn` shows a listener on it).
pub fn wait_for_listener(ns: &Netns, port: u16, timeout: Duration) -> bool {
    wait_for(timeout, || {
        let out = ns.run(["ss", "-Hltn"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .any(|l| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(&format!(":{port}"))))
            .then_some(())
    })
    .is_some()
}

/// Counts the lines of a file (0 when missing): for ground-truth logs that
/// a `pam_exec.so` line appends to.
pub fn count_lines(path: &Path) -> usize {
    fs::File::open(path).map(|f| BufReader::new(f).lines().count()).unwrap_or(0)
}

/// Runs firewall commands inside `ns` (through nsenter): the back-ends
/// take a `Runner`, and this machine's own firewall is never touched.
pub fn ns_runner(ns: &Netns) -> banguard::sync::SystemRunner {
    let pid = ns.init_pid().to_string();
    banguard::sync::SystemRunner::with_prefix([
        "nsenter",
        "--target",
        pid.as_str(),
        "--net",
        "--mount",
        "--pid",
        "--",
    ])
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
        as i64
}
