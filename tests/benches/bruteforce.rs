//! Side-by-side brute-force benchmark (BENCHMARKS-bruteforce.md): the same
//! attacks on the same real OpenSSH sshd, defended in turn by
//!
//! * banguard: its one PAM line (`auth requisite pam_banguard.so`);
//! * fail2ban: Debian's package, run inside the namespace with its own
//!   config dir, socket, pid file and database, its stock `sshd` filter on
//!   this sshd's log (pyinotify back-end) and the `iptables-multiport`
//!   action, which changes only the namespace's firewall;
//! * pam_abl: Debian's libpam-abl, its one PAM line with a rule of the
//!   same strength (`*:3/10m`), as `requisite` (see [`Defender::PamAbl`]).
//!   `BANGUARD_BENCH_PAM_ABL` names the module: run.sh extracts it from
//!   the package without installing it, because installing libpam-abl runs
//!   pam-auth-update and puts pam_abl into this machine's common-auth.
//!
//! All three get maxretry 3, findtime 10m, bantime 10m, and no ignore list;
//! pam_unix keeps its stock 2 s fail delay, and banguard runs with its
//! defaults and its sync started on each trigger (nftables in the
//! namespace, [`PathUnit`]), as the .deb sets it up. Ground truth is not asked of the defenders: a `pam_exec` line right
//! before `@include common-auth` logs every password that reached
//! pam_unix, with its time. Ignored by `cargo test`; run it with
//! `bench/bruteforce/run.sh` (root; sshd, fail2ban, libpam-abl installed).

use banguard::{Banguard, Config, Request};
use banguard_e2e::fail2ban::{Fail2ban, syslog_prefix};
use banguard_e2e::fixture::{Fixture, Policy};
use banguard_e2e::pathunit::PathUnit;
use banguard_e2e::sshd::{
    DEBIAN_SSHD_STACK, Login, Method, RunningLogin, SshdOptions, SshdServer, TEST_PASSWORD, TEST_USER,
    with_auth_lines,
};
use banguard_e2e::{Netns, require, wait_for};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// `cargo bench -p banguard-e2e --bench bruteforce [-- NAME...]` runs the benchmarks
/// whose names contain a NAME (all of them without one). Root only.
fn main() {
    banguard_e2e::run_benches(&[
        ("bench_bruteforce_side_by_side", bench_bruteforce_side_by_side as fn()),
        ("bench_log_flood", bench_log_flood as fn()),
        ("bench_sustained_attack", bench_sustained_attack as fn()),
        ("bench_account_spray", bench_account_spray as fn()),
    ]);
}

const MAXRETRY: usize = 3;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Defender {
    Banguard,
    Fail2ban,
    /// pam_abl's README.Debian line is `auth required pam_abl.so`: with
    /// `required` a blocked host's passwords still reach pam_unix (only the
    /// result is forced to a failure). `requisite` stops them there, so
    /// this is pam_abl's best case.
    PamAbl,
}

impl Defender {
    fn name(self) -> &'static str {
        match self {
            Defender::Banguard => "banguard",
            Defender::Fail2ban => "fail2ban",
            Defender::PamAbl => "pam_abl",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pattern {
    /// 1 host, 8 connections one after another, 3 wrong passwords each.
    Sequential,
    /// 1 host, 32 connections at once, 4 wrong passwords each.
    Parallel,
    /// 32 hosts, 4 connections each, all at once, 3 wrong passwords each.
    Distributed,
    /// 1 host, 8 connections of one wrong password, one every 2 s.
    Slow,
    /// 1 host, 8 connections one after another, each a different
    /// (non-existent) user name, 3 passwords each.
    Spray,
    /// As `Sequential`, with the keyboard-interactive method.
    KbdInt,
}

const PATTERNS: [Pattern; 6] = [
    Pattern::Sequential,
    Pattern::Parallel,
    Pattern::Distributed,
    Pattern::Slow,
    Pattern::Spray,
    Pattern::KbdInt,
];

impl Pattern {
    fn label(self) -> &'static str {
        match self {
            Pattern::Sequential => "1 host, 8 sequential connections × 3 passwords",
            Pattern::Parallel => "1 host, 32 parallel connections × 4 passwords",
            Pattern::Distributed => "32 hosts × 4 parallel connections × 3 passwords",
            Pattern::Slow => "1 host, 1 password every 2 s, 8 times",
            Pattern::Spray => "1 host, username spray: 8 users × 3 passwords",
            Pattern::KbdInt => "1 host, keyboard-interactive, 8 × 3 passwords",
        }
    }

    fn hosts(self) -> usize {
        if self == Pattern::Distributed { 32 } else { 1 }
    }

    /// Runs the attack from `hosts` (the label says how many passwords).
    fn run(self, srv: &SshdServer, ns: &Netns, hosts: &[String]) {
        let wrong = |n: usize| -> Vec<String> { (1..=n).map(|i| format!("wrong-{i}")).collect() };
        let login = |method: Method, src: &str, user: &str, pws: &[String]| {
            let pws: Vec<&str> = pws.iter().map(String::as_str).collect();
            let mut l = Login::new(method, src, user, &pws);
            l.timeout = Duration::from_secs(15);
            l
        };
        // Every client started before any is waited for.
        let finish_all = |running: Vec<RunningLogin>| {
            for r in running {
                r.finish();
            }
        };
        match self {
            Pattern::Sequential | Pattern::KbdInt | Pattern::Spray => {
                let method =
                    if self == Pattern::KbdInt { Method::KeyboardInteractive } else { Method::Password };
                for c in 0..8 {
                    let user =
                        if self == Pattern::Spray { format!("spray{c}") } else { TEST_USER.to_string() };
                    srv.login(ns, &login(method, &hosts[0], &user, &wrong(3)));
                }
            }
            Pattern::Parallel => {
                let l = login(Method::Password, &hosts[0], TEST_USER, &wrong(4));
                finish_all((0..32).map(|_| srv.spawn_login(ns, &l)).collect());
            }
            Pattern::Distributed => {
                let running: Vec<RunningLogin> = hosts
                    .iter()
                    .flat_map(|h| {
                        let l = login(Method::Password, h, TEST_USER, &wrong(3));
                        (0..4).map(move |_| l.clone())
                    })
                    .map(|l| srv.spawn_login(ns, &l))
                    .collect();
                finish_all(running);
            }
            Pattern::Slow => {
                for _ in 0..8 {
                    let t = Instant::now();
                    srv.login(ns, &login(Method::Password, &hosts[0], TEST_USER, &wrong(1)));
                    std::thread::sleep(Duration::from_secs(2).saturating_sub(t.elapsed()));
                }
            }
        }
    }
}

/// Every password that reached pam_unix: `rhost epoch-seconds` per line.
struct Truth {
    dir: tempfile::TempDir,
}

impl Truth {
    fn new() -> Truth {
        let dir = tempfile::Builder::new().prefix("bg-bf-truth.").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let script = format!(
            "#!/bin/sh\n[ \"$PAM_TYPE\" = auth ] || exit 0\necho \"$PAM_RHOST $(date +%s.%N)\" >> '{}'\n",
            dir.path().join("evaluated.log").display()
        );
        let path = dir.path().join("truth.sh");
        fs::write(&path, script).expect("write truth script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        Truth { dir }
    }

    fn line(&self) -> String {
        format!("auth [default=ignore] pam_exec.so quiet {}", self.dir.path().join("truth.sh").display())
    }

    /// Times at which passwords from `host` were evaluated, in order.
    fn times(&self, host: &str) -> Vec<f64> {
        let text = fs::read_to_string(self.dir.path().join("evaluated.log")).unwrap_or_default();
        let mut v: Vec<f64> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(h, _)| *h == host)
            .filter_map(|(_, t)| t.trim().parse().ok())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

/// Copies sshd's `-e` output (bare messages) to a file in the shape
/// fail2ban's stock filter expects, a syslog line with a prefix, as
/// rsyslog would write /var/log/auth.log. Polls every 5 ms; stops on drop.
struct SyslogRelay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyslogRelay {
    fn start(src: PathBuf, dst: PathBuf) -> SyslogRelay {
        use std::io::{Read, Seek, SeekFrom};
        use std::sync::atomic::Ordering;
        fs::write(&dst, "").expect("create relayed log");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut pending = Vec::new();
            let mut out = fs::OpenOptions::new().append(true).open(&dst).expect("open relayed log");
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut f) = fs::File::open(&src) {
                    let mut buf = Vec::new();
                    if f.seek(SeekFrom::Start(offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                        offset += buf.len() as u64;
                        pending.extend_from_slice(&buf);
                    }
                }
                if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                    let prefix = syslog_prefix("sshd", 1);
                    let mut chunk = String::new();
                    for line in String::from_utf8_lossy(&pending[..end]).lines() {
                        chunk.push_str(&prefix);
                        chunk.push_str(line.trim_end_matches('\r'));
                        chunk.push('\n');
                    }
                    out.write_all(chunk.as_bytes()).expect("write relayed log");
                    pending.drain(..=end);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        SyslogRelay { stop, thread: Some(thread) }
    }
}

impl Drop for SyslogRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The time logged for `host` in a file of `host epoch-seconds` lines
/// (written by the defenders' ban hooks).
fn stamp_of(log: &Path, host: &str) -> Option<f64> {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once(' ')).find(|(h, _)| *h == host).and_then(|(_, t)| t.parse().ok())
}

/// `utime + stime + cutime + cstime` of a process, in seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 → index 11.
    let ticks: u64 = (11..15).filter_map(|i| f.get(i)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Pids whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// fail2ban as the benchmark runs it.
trait Bench {
    fn start_bench(ns: &mut Netns, logpath: &Path, port: u16, maxretry: usize) -> Fail2ban;
    fn ban_time(&self, host: &str) -> Option<f64>;
    fn cpu(&self) -> f64;
    fn total_failed(&self, ns: &Netns) -> Option<u64>;
}

impl Bench for Fail2ban {
    /// One jail, `sshd` (the stock filter), on `logpath`, `maxretry`
    /// failures in 10m → 10m ban through iptables-multiport on `port`, and
    /// a stamp action that logs when each ban is in place.
    fn start_bench(ns: &mut Netns, logpath: &Path, port: u16, maxretry: usize) -> Fail2ban {
        let jail = format!(
            "[DEFAULT]\nignoreself = false\nignoreip =\nbantime = 600\nfindtime = 600\nmaxretry = {maxretry}\n\
             backend = pyinotify\n\n\
             [sshd]\nenabled = true\nfilter = sshd\nport = {port}\nlogpath = {log}\n\
             action = iptables-multiport[name=sshd, port=\"{port}\", protocol=tcp]\n         bg-stamp\n",
            log = logpath.display()
        );
        let stamp =
            "[Definition]\nactionban = echo \"<ip> $(date +%%s.%%N)\" >> @DIR@/bans.log\nactionunban =\n";
        Fail2ban::start(ns, &jail, &[("action.d/bg-stamp.conf", stamp.to_string())], "sshd")
    }

    /// When the ban of `host` was in place (after its iptables rule).
    fn ban_time(&self, host: &str) -> Option<f64> {
        stamp_of(&self.dir().join("bans.log"), host)
    }

    /// CPU seconds of the server and the action commands it has reaped.
    fn cpu(&self) -> f64 {
        pids_mentioning(&self.conf().display().to_string()).into_iter().map(cpu_of).sum()
    }

    /// The jail's "Total failed" figure.
    fn total_failed(&self, ns: &Netns) -> Option<u64> {
        let out = self.client(ns, &["status", "sshd"]);
        out.lines().find(|l| l.contains("Total failed:"))?.split(':').nth(1)?.trim().parse().ok()
    }
}

/// pam_abl's config and database in a temp dir, with a block command that
/// logs when each host became blocked.
struct PamAbl {
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl PamAbl {
    fn new(module: &Path, maxretry: usize) -> PamAbl {
        let dir = tempfile::Builder::new().prefix("bg-bf-abl.").tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir(d.join("db")).expect("mkdir db");
        let stamp = d.join("stamp.sh");
        fs::write(&stamp, format!("#!/bin/sh\necho \"$1 $(date +%s.%N)\" >> '{}/blocks.log'\n", d.display()))
            .expect("write stamp");
        fs::set_permissions(&stamp, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(
            d.join("pam_abl.conf"),
            format!(
                "db_home={d}/db\nhost_db={d}/db/hosts.db\nhost_purge=1d\nhost_rule=*:{maxretry}/10m\n\
                 user_db={d}/db/users.db\nuser_purge=1d\nuser_rule=*:1000000/10m\n\
                 host_block_cmd=[{stamp}] [%h]\nlimits=1000-1200\nhost_whitelist=\nuser_whitelist=\n",
                d = d.display(),
                stamp = stamp.display()
            ),
        )
        .expect("write pam_abl.conf");
        PamAbl { dir, module: module.to_path_buf() }
    }

    fn line(&self) -> String {
        format!(
            "auth requisite {} config={}",
            self.module.display(),
            self.dir.path().join("pam_abl.conf").display()
        )
    }

    fn block_time(&self, host: &str) -> Option<f64> {
        stamp_of(&self.dir.path().join("blocks.log"), host)
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
struct RunResult {
    /// Passwords evaluated for the most successful attacking host.
    evaluated_max: usize,
    /// Passwords evaluated, all attacking hosts together.
    evaluated_total: usize,
    /// Seconds from the host's maxretry-th evaluated password to its block
    /// (single-host patterns only; `None` when it was never blocked).
    block_after: Option<f64>,
    /// Connections of the attacking hosts that reached sshd.
    reached: usize,
    sshd_cpu: f64,
    /// fail2ban's daemon and actions, or banguard's sync runs.
    daemon_cpu: f64,
    legit_ok: bool,
    wall: f64,
}

/// The n-th of the 762 documentation addresses (192.0.2.1 ..
/// 203.0.113.254).
fn doc_addr(n: usize) -> String {
    const RANGES: [&str; 3] = ["192.0.2", "198.51.100", "203.0.113"];
    assert!(n < 3 * 254, "only {} documentation addresses", 3 * 254);
    format!("{}.{}", RANGES[n / 254], n % 254 + 1)
}

/// Waits (up to 45 s) until sshd has reaped every connection process, so
/// that their CPU is in the listener's figure.
fn wait_for_reaped(listener: u32) {
    let children = format!("/proc/{listener}/task/{listener}/children");
    let reaped = wait_for(Duration::from_secs(45), || {
        fs::read_to_string(&children).is_ok_and(|c| c.trim().is_empty()).then_some(())
    });
    assert!(reaped.is_some(), "sshd's connection processes did not end");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn bench_bruteforce_side_by_side() {
    if !require(
        "bench_bruteforce_side_by_side",
        true,
        &["unshare", "nsenter", "ip", "sshd", "ssh", "fail2ban-server", "fail2ban-client", "iptables"],
    ) {
        return;
    }
    let runs = knob("BANGUARD_BENCH_RUNS", 3);
    let only: Option<String> = std::env::var("BANGUARD_BENCH_DEFENDERS").ok();
    let defenders: Vec<Defender> = [Defender::Banguard, Defender::Fail2ban, Defender::PamAbl]
        .into_iter()
        .filter(|d| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == d.name())))
        .collect();
    let abl_module = PathBuf::from(std::env::var("BANGUARD_BENCH_PAM_ABL").unwrap_or_default());
    assert!(
        abl_module.is_file() || !defenders.contains(&Defender::PamAbl),
        "BANGUARD_BENCH_PAM_ABL must name pam_abl.so (bench/bruteforce/run.sh extracts it from libpam-abl)"
    );

    assert!(runs * PATTERNS.len() * 33 <= 3 * 254, "at most 3 runs: the addresses would run out");
    let mut results: BTreeMap<(Defender, Pattern), Vec<RunResult>> = BTreeMap::new();
    for &defender in &defenders {
        let mut ns = Netns::new();
        let truth = Truth::new();
        // 33 documentation addresses per run and pattern on the namespace's
        // lo (data only: every connection goes to 127.0.0.1): up to 32
        // attackers, then the legitimate host of that run.
        let addr_of = |run: usize, pi: usize, h: usize| doc_addr((run * PATTERNS.len() + pi) * 33 + h);
        for run in 0..runs {
            for pi in 0..PATTERNS.len() {
                for h in 0..33 {
                    ns.add_lo_addr(&format!("{}/32", addr_of(run, pi, h)));
                }
            }
        }
        let abl = PamAbl::new(&abl_module, MAXRETRY);
        // banguard's defaults: the sync on the trigger, to nftables
        // (hosts that keep knocking go to the kernel), refusal delay 2 s.
        let banguard_fixture = || {
            let fx = Fixture::new(&Policy {
                maxretry: MAXRETRY as u32,
                bantime: "10m",
                runtime_on_tmpfs: true,
                refusal_delay: "2s",
                ..Policy::default()
            });
            fx.sync_to_nftables("");
            fx
        };
        let mut fixture = banguard_fixture();
        let stack = |fx: &Fixture| -> String {
            let lines: Vec<String> = match defender {
                Defender::Banguard => vec![fx.module_line(""), truth.line()],
                Defender::Fail2ban => vec![truth.line()],
                Defender::PamAbl => vec![abl.line(), truth.line()],
            };
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            with_auth_lines(DEBIAN_SSHD_STACK, &refs)
        };
        // pam_unix's stock fail delay (2 s) for every defender; a connection
        // cut by a kernel rule lingers in sshd for LoginGraceTime.
        let mut opts = SshdOptions::with_stack(&stack(&fixture));
        opts.pam_unix_nodelay = false;
        opts.login_grace_time = 15;
        let srv = SshdServer::start(&mut ns, opts);
        let relay = (defender == Defender::Fail2ban)
            .then(|| SyslogRelay::start(srv.dir().join("sshd.log"), srv.dir().join("auth.log")));
        let f2b = (defender == Defender::Fail2ban)
            .then(|| Fail2ban::start_bench(&mut ns, &srv.dir().join("auth.log"), srv.port(), MAXRETRY));
        let listener = srv.listener_pid().expect("sshd listener pid");

        for run in 0..runs {
            for (pi, &pattern) in PATTERNS.iter().enumerate() {
                let hosts: Vec<String> = (0..pattern.hosts()).map(|h| addr_of(run, pi, h)).collect();
                let legit_host = addr_of(run, pi, 32);
                let mut unit = None;
                if defender == Defender::Banguard {
                    // A fresh store per run: its first trigger is the moment
                    // the (one) ban was created.
                    fixture = banguard_fixture();
                    srv.set_pam_stack(&ns, &stack(&fixture));
                    unit = Some(PathUnit::start(ns.init_pid(), &fixture.trigger(), &fixture.config));
                }
                let (sshd0, daemon0) = (cpu_of(listener), f2b.as_ref().map_or(0.0, Fail2ban::cpu));
                let t0 = Instant::now();
                pattern.run(&srv, &ns, &hosts);
                let wall = t0.elapsed().as_secs_f64();
                // Let fail2ban catch up with the log, and sshd reap its
                // children (cut connections end at LoginGraceTime), before
                // reading the figures.
                std::thread::sleep(Duration::from_secs(2));
                wait_for_reaped(listener);
                let legit = srv.try_password(&ns, &legit_host, TEST_USER, &[TEST_PASSWORD]);
                let evaluated: Vec<usize> = hosts.iter().map(|h| truth.times(h).len()).collect();
                let block_after = (pattern.hosts() == 1)
                    .then(|| {
                        let h = &hosts[0];
                        let t_k = *truth.times(h).get(MAXRETRY - 1)?;
                        let t_block = match defender {
                            Defender::Banguard => unit
                                .as_ref()?
                                .triggered
                                .lock()
                                .ok()?
                                .first()?
                                .duration_since(UNIX_EPOCH)
                                .ok()?
                                .as_secs_f64(),
                            Defender::Fail2ban => f2b.as_ref()?.ban_time(h)?,
                            Defender::PamAbl => abl.block_time(h)?,
                        };
                        Some(t_block - t_k)
                    })
                    .flatten();
                let sync_cpu = unit.as_ref().map_or(0.0, |u| {
                    u.cpu_ticks.load(std::sync::atomic::Ordering::Relaxed) as f64
                        / banguard_e2e::pathunit::ticks_per_second()
                });
                let r = RunResult {
                    evaluated_max: evaluated.iter().copied().max().unwrap_or(0),
                    evaluated_total: evaluated.iter().sum(),
                    block_after,
                    reached: hosts
                        .iter()
                        .map(|h| srv.log().matches(&format!("Connection from {h} port")).count())
                        .sum(),
                    sshd_cpu: cpu_of(listener) - sshd0,
                    daemon_cpu: f2b.as_ref().map_or(0.0, Fail2ban::cpu) - daemon0 + sync_cpu,
                    legit_ok: legit.success(),
                    wall,
                };
                eprintln!("{} run {run} {:?}: {r:?}", defender.name(), pattern);
                results.entry((defender, pattern)).or_default().push(r);
            }
        }
        if let Some(f) = &f2b {
            eprintln!("fail2ban log tail:\n{}", f.log().lines().rev().take(5).collect::<Vec<_>>().join("\n"));
        }
        drop(relay);
        drop(srv);
        drop(ns);
    }

    println!();
    println!(
        "# brute force, side by side: maxretry {MAXRETRY}, findtime 10m, bantime 10m; pam_unix's stock 2 s fail delay; banguard with its defaults and the sync on the trigger (nftables); median of {runs} runs"
    );
    println!(
        "# evaluated = passwords that reached pam_unix (ground truth from the PAM stack), for the most successful attacking host"
    );
    println!();
    println!(
        "| attack | defender | evaluated per host | overshoot | evaluated, all hosts | block after maxretry-th | connections reaching sshd | sshd CPU s | defender CPU s | total server CPU s | legit host logs in | wall s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &pattern in &PATTERNS {
        for &defender in &defenders {
            let Some(rs) = results.get(&(defender, pattern)) else { continue };
            let ev = median(rs.iter().map(|r| r.evaluated_max as f64).collect());
            let blocks: Vec<f64> = rs.iter().filter_map(|r| r.block_after).collect();
            let block = if pattern.hosts() > 1 {
                "—".to_string()
            } else if blocks.len() < rs.len() {
                format!("never in {}/{}", rs.len() - blocks.len(), rs.len())
            } else {
                format!("{:.3} s", median(blocks))
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {}/{} | {:.1} |",
                pattern.label(),
                defender.name(),
                ev,
                (ev - MAXRETRY as f64).max(0.0),
                median(rs.iter().map(|r| r.evaluated_total as f64).collect()),
                block,
                median(rs.iter().map(|r| r.reached as f64).collect()),
                median(rs.iter().map(|r| r.sshd_cpu).collect()),
                median(rs.iter().map(|r| r.daemon_cpu).collect()),
                median(rs.iter().map(|r| r.sshd_cpu + r.daemon_cpu).collect()),
                rs.iter().filter(|r| r.legit_ok).count(),
                rs.len(),
                median(rs.iter().map(|r| r.wall).collect()),
            );
        }
    }
    // The one claim this benchmark makes for banguard: no overshoot.
    for &pattern in &PATTERNS {
        if let Some(rs) = results.get(&(Defender::Banguard, pattern)) {
            for r in rs {
                assert!(r.evaluated_max <= MAXRETRY, "banguard overshoot on {pattern:?}: {r:?}");
                assert!(r.legit_ok, "banguard refused the legitimate host on {pattern:?}");
            }
        }
    }
}

/// fail2ban reading LINES log lines of failed passwords from distinct
/// addresses, beside banguard recording the same number of failures the way
/// sshd's processes would (load config, open store, record, close).
fn bench_log_flood() {
    if !require("bench_log_flood", true, &["unshare", "nsenter", "fail2ban-server", "fail2ban-client"]) {
        return;
    }
    let lines = knob("BANGUARD_BENCH_LINES", 200_000);
    let mut ns = Netns::new();
    let logdir = tempfile::Builder::new().prefix("bg-bf-flood.").tempdir().expect("tempdir");
    let log = logdir.path().join("sshd.log");
    fs::write(&log, "").expect("create log");
    // maxretry above 1: every address fails once, nobody is banned, so
    // this measures reading and matching alone.
    let f2b = Fail2ban::start_bench(&mut ns, &log, 2222, 5);
    let cpu0 = f2b.cpu();
    let t0 = Instant::now();
    {
        let mut w =
            std::io::BufWriter::new(fs::OpenOptions::new().append(true).open(&log).expect("open log"));
        for i in 0..lines {
            // Documentation prefix, as data only.
            writeln!(
                w,
                "{}Failed password for root from 2001:db8:{:x}:{:x}::7 port {} ssh2",
                syslog_prefix("sshd", 1),
                i >> 16,
                i & 0xffff,
                10000 + i % 50000
            )
            .expect("write log");
        }
    }
    let done = wait_for(Duration::from_secs(900), || {
        std::thread::sleep(Duration::from_millis(200));
        (f2b.total_failed(&ns)? >= lines as u64).then_some(())
    });
    let f2b_wall = t0.elapsed().as_secs_f64();
    let f2b_cpu = f2b.cpu() - cpu0;
    let counted = f2b.total_failed(&ns).unwrap_or(0);

    let fx = Fixture::new(&Policy { maxretry: 5, runtime_on_tmpfs: true, ..Policy::default() });
    // SAFETY: getrusage writes into the struct we pass; no other precondition.
    let rusage = || unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        (u.ru_utime.tv_sec as f64 + u.ru_utime.tv_usec as f64 / 1e6)
            + (u.ru_stime.tv_sec as f64 + u.ru_stime.tv_usec as f64 / 1e6)
    };
    let c0 = rusage();
    let t1 = Instant::now();
    for i in 0..lines {
        let rhost = format!("2001:db8:{:x}:{:x}::7", i >> 16, i & 0xffff);
        let mut g = Config::load(&fx.config).and_then(Banguard::open).expect("open store");
        g.record_failure(&Request { service: "sshd", rhost: Some(&rhost), hint: None, user: Some("root") })
            .expect("record failure");
    }
    let bg_wall = t1.elapsed().as_secs_f64();
    let bg_cpu = rusage() - c0;
    // The failures live in the runtime state (tmpfs, as /run is).
    let runtime = Config::load(&fx.config).expect("config").store.runtime;
    let size = fs::metadata(&runtime).map(|m| m.len()).unwrap_or(0);

    println!();
    println!("# log flood: {lines} failed passwords from {lines} distinct addresses");
    println!();
    println!("| defender | what it does per failure | wall s | CPU s | counted |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| fail2ban | reads and matches one sshd log line (pyinotify, stock sshd filter) | {f2b_wall:.1}{} | {f2b_cpu:.1} | {counted} |",
        if done.is_none() { " (gave up)" } else { "" }
    );
    println!(
        "| banguard | load config, open store, record, close (as each sshd connection does) | {bg_wall:.1} | {bg_cpu:.1} | {lines} (runtime state {:.1} MB) |",
        size as f64 / 1e6
    );
    assert!(done.is_some(), "fail2ban counted {counted} of {lines} within 15 minutes");
}

/// Who defends in the sustained attack (BANGUARD_BENCH_SUSTAINED_DEFENDERS:
/// a comma-separated subset of the keys below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sustained {
    /// banguard's defaults: `[sync] scope = "repeat"`, `escalate_after = 2`,
    /// `refusal_delay = "2s"`, nftables, the sync run on the trigger (the
    /// path unit's stand-in).
    Banguard,
    /// The same with `refusal_delay = 0`: refusals answered at once.
    BanguardNoDelay,
    /// The defaults, with the sync run by cron once a minute instead of the
    /// path unit (the first run a minute after the attack starts).
    BanguardCron,
    /// Cron, and refusals answered at once.
    BanguardCronNoDelay,
    /// `escalate_after = 0`, `refusal_delay = 0`: the behaviour before
    /// issue 12 (a first ban is PAM's only, refused at once).
    BanguardPamOnly,
    Fail2ban,
    /// The stock stack alone: pam_unix and its fail delay.
    Nothing,
}

impl Sustained {
    const ALL: [Sustained; 7] = [
        Sustained::Banguard,
        Sustained::BanguardNoDelay,
        Sustained::BanguardCron,
        Sustained::BanguardCronNoDelay,
        Sustained::BanguardPamOnly,
        Sustained::Fail2ban,
        Sustained::Nothing,
    ];

    fn key(self) -> &'static str {
        match self {
            Sustained::Banguard => "banguard",
            Sustained::BanguardNoDelay => "no-delay",
            Sustained::BanguardCron => "cron",
            Sustained::BanguardCronNoDelay => "cron-no-delay",
            Sustained::BanguardPamOnly => "pam-only",
            Sustained::Fail2ban => "fail2ban",
            Sustained::Nothing => "nothing",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sustained::Banguard => "banguard as installed on systemd (path unit + timer, refusal_delay 2 s)",
            Sustained::BanguardNoDelay => "banguard, path unit, refusal_delay = 0",
            Sustained::BanguardCron => "banguard as installed without systemd (cron, refusal_delay 2 s)",
            Sustained::BanguardCronNoDelay => "banguard, cron, refusal_delay = 0",
            Sustained::BanguardPamOnly => "banguard as before (escalate_after = 0, no refusal delay)",
            Sustained::Fail2ban => "fail2ban (iptables-multiport)",
            Sustained::Nothing => "no defender",
        }
    }

    fn is_banguard(self) -> bool {
        !matches!(self, Sustained::Fail2ban | Sustained::Nothing)
    }
}

/// A sustained attack (issue 12): BOTS hosts x 2 workers, each connecting
/// again and again with 3 wrong passwords for BANGUARD_BENCH_SUSTAIN
/// seconds (default 60), as real bots keep going after their ban; ssh's
/// connect timeout is 5 s, so a dropped bot keeps trying cheaply. The stock
/// pam_unix fail delay (2 s) is on for every defender. Per defender: the
/// most passwords any bot got evaluated, connections that reached sshd
/// (sshd's "Connection from" lines), sshd's CPU, the defender's CPU
/// (fail2ban's daemon; banguard's sync runs), wall time; median of
/// BANGUARD_BENCH_RUNS (default 3). Bots come from 198.51.100.0/24 on the
/// namespace's lo (data only: every connection goes to 127.0.0.1).
fn bench_sustained_attack() {
    if !require(
        "bench_sustained_attack",
        true,
        &["unshare", "nsenter", "ip", "sshd", "ssh", "nft", "fail2ban-server", "fail2ban-client", "iptables"],
    ) {
        return;
    }
    const BOTS: usize = 4;
    let runs = knob("BANGUARD_BENCH_RUNS", 3);
    let seconds = knob("BANGUARD_BENCH_SUSTAIN", 60) as u64;
    let only = std::env::var("BANGUARD_BENCH_SUSTAINED_DEFENDERS").ok();
    let defenders: Vec<Sustained> = Sustained::ALL
        .into_iter()
        .filter(|d| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == d.key())))
        .collect();
    let mut rows: BTreeMap<Sustained, Vec<[f64; 6]>> = BTreeMap::new();
    for &defender in &defenders {
        for run in 0..runs {
            let mut ns = Netns::new();
            let bots: Vec<String> = (1..=BOTS).map(|b| format!("198.51.100.{b}")).collect();
            // Each run has its own namespace, store and sshd.
            let legit = "203.0.113.1".to_string();
            for a in bots.iter().chain([&legit]) {
                ns.add_lo_addr(&format!("{a}/32"));
            }
            let truth = Truth::new();
            let no_delay = matches!(
                defender,
                Sustained::BanguardNoDelay | Sustained::BanguardCronNoDelay | Sustained::BanguardPamOnly
            );
            let fx = Fixture::new(&Policy {
                maxretry: MAXRETRY as u32,
                bantime: "10m",
                runtime_on_tmpfs: true,
                refusal_delay: if no_delay { "0" } else { "2s" },
                ..Policy::default()
            });
            // BANGUARD_BENCH_ESCALATE: escalate_after for the other rows
            // (its default is the config's, 2).
            let escalate =
                if defender == Sustained::BanguardPamOnly { 0 } else { knob("BANGUARD_BENCH_ESCALATE", 2) };
            fx.sync_to_nftables(&format!("escalate_after = {escalate}\n"));
            let lines: Vec<String> = if defender.is_banguard() {
                vec![fx.module_line(""), truth.line()]
            } else {
                vec![truth.line()]
            };
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let mut opts = SshdOptions::with_stack(&with_auth_lines(DEBIAN_SSHD_STACK, &refs));
            opts.pam_unix_nodelay = false;
            let srv = SshdServer::start(&mut ns, opts);
            let relay = (defender == Sustained::Fail2ban)
                .then(|| SyslogRelay::start(srv.dir().join("sshd.log"), srv.dir().join("auth.log")));
            let f2b = (defender == Sustained::Fail2ban)
                .then(|| Fail2ban::start_bench(&mut ns, &srv.dir().join("auth.log"), srv.port(), MAXRETRY));
            let cron = matches!(defender, Sustained::BanguardCron | Sustained::BanguardCronNoDelay);
            let unit = defender.is_banguard().then(|| {
                if cron {
                    let minute = Duration::from_secs(knob("BANGUARD_BENCH_CRON", 60) as u64);
                    PathUnit::every(ns.init_pid(), minute, &fx.config)
                } else {
                    PathUnit::start(ns.init_pid(), &fx.trigger(), &fx.config)
                }
            });
            let listener = srv.listener_pid().expect("sshd listener pid");
            let (sshd0, f2b0) = (cpu_of(listener), f2b.as_ref().map_or(0.0, Fail2ban::cpu));
            let t0 = Instant::now();
            let deadline = t0 + Duration::from_secs(seconds);
            std::thread::scope(|s| {
                for bot in &bots {
                    for _ in 0..2 {
                        let (srv, ns) = (&srv, &ns);
                        s.spawn(move || {
                            while Instant::now() < deadline {
                                let mut l = Login::new(
                                    Method::Password,
                                    bot,
                                    TEST_USER,
                                    &["wrong-1", "wrong-2", "wrong-3"],
                                );
                                l.timeout = Duration::from_secs(15);
                                srv.login(ns, &l);
                            }
                        });
                    }
                }
            });
            let wall = t0.elapsed().as_secs_f64();
            // Connections dropped mid-way linger until LoginGraceTime: their
            // CPU counts only once sshd has reaped them.
            wait_for_reaped(listener);
            std::thread::sleep(Duration::from_secs(1));
            let log = srv.log();
            let reached: usize =
                bots.iter().map(|b| log.matches(&format!("Connection from {b} port")).count()).sum();
            let evaluated = bots.iter().map(|b| truth.times(b).len()).max().unwrap_or(0);
            let sshd_cpu = cpu_of(listener) - sshd0;
            let defender_cpu = match (&f2b, &unit) {
                (Some(f), _) => f.cpu() - f2b0,
                (_, Some(u)) => {
                    u.cpu_ticks.load(std::sync::atomic::Ordering::Relaxed) as f64
                        / banguard_e2e::pathunit::ticks_per_second()
                }
                _ => 0.0,
            };
            let legit_ok = srv.try_password(&ns, &legit, TEST_USER, &[TEST_PASSWORD]).success();
            assert!(legit_ok, "{}: the legitimate host could not log in", defender.name());
            eprintln!(
                "{} run {run}: evaluated {evaluated}, reached {reached}, sshd {sshd_cpu:.2} s, defender {defender_cpu:.2} s, wall {wall:.1} s",
                defender.name()
            );
            rows.entry(defender).or_default().push([
                evaluated as f64,
                reached as f64,
                sshd_cpu,
                defender_cpu,
                sshd_cpu + defender_cpu,
                wall,
            ]);
            drop(unit);
            drop(f2b);
            drop(relay);
            drop(srv);
        }
    }
    println!();
    println!(
        "# sustained attack: {BOTS} bots x 2 workers, 3 wrong passwords per connection, {seconds} s; maxretry {MAXRETRY}; banguard's escalate_after {}; median of {runs} runs",
        knob("BANGUARD_BENCH_ESCALATE", 2)
    );
    println!();
    println!(
        "| defender | passwords evaluated (most for one bot) | connections reaching sshd | sshd CPU s | defender CPU s | total server CPU s | wall s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (defender, rs) in &rows {
        let col = |i: usize| median(rs.iter().map(|r| r[i]).collect());
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
            defender.name(),
            col(0),
            col(1),
            col(2),
            col(3),
            col(4),
            col(5)
        );
    }
    for d in Sustained::ALL.into_iter().filter(|d| d.is_banguard()) {
        for r in rows.get(&d).into_iter().flatten() {
            assert!(r[0] as usize <= MAXRETRY, "{}: more than maxretry evaluated: {r:?}", d.name());
        }
    }
}

/// Who defends the account in the spray benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SprayDefender {
    /// banguard with the account side off: per-address counting only.
    BanguardHostsOnly,
    /// banguard's defaults, learning over (`learning = 0`).
    Banguard,
    Fail2ban,
    /// pam_faillock as faillock.conf(5) documents it: deny=3,
    /// unlock_time=600, preauth / authfail / account.
    Faillock,
}

impl SprayDefender {
    fn key(self) -> &'static str {
        match self {
            SprayDefender::BanguardHostsOnly => "hosts-only",
            SprayDefender::Banguard => "banguard",
            SprayDefender::Fail2ban => "fail2ban",
            SprayDefender::Faillock => "faillock",
        }
    }

    fn name(self) -> &'static str {
        match self {
            SprayDefender::BanguardHostsOnly => "banguard, account side off",
            SprayDefender::Banguard => "banguard",
            SprayDefender::Fail2ban => "fail2ban",
            SprayDefender::Faillock => "pam_faillock",
        }
    }
}

/// A botnet spraying one account: `BANGUARD_BENCH_SPRAY_BOTS` (2,000)
/// addresses, each in its own /24 (private addresses on the namespace's lo,
/// data only: every connection goes to 127.0.0.1), one wrong password each,
/// 64 at a time, against the owner's account. The owner logged in from
/// home (198.51.100.7) before; after the spray the owner tries three times
/// from home. Figures: passwords that reached pam_unix (ground truth),
/// the owner's logins, and the server's CPU (sshd and its children, which
/// run the PAM modules, plus fail2ban's daemon).
fn bench_account_spray() {
    if !require(
        "bench_account_spray",
        true,
        &["unshare", "nsenter", "ip", "sshd", "ssh", "fail2ban-server", "fail2ban-client", "iptables"],
    ) {
        return;
    }
    let bots = knob("BANGUARD_BENCH_SPRAY_BOTS", 2000);
    let bot = |n: usize| format!("10.{}.{}.1", n / 256, n % 256);
    const HOME: &str = "198.51.100.7";
    let mut rows = Vec::new();
    // BANGUARD_BENCH_SPRAY_DEFENDERS=hosts-only,banguard,fail2ban,faillock for a subset.
    let only = std::env::var("BANGUARD_BENCH_SPRAY_DEFENDERS").ok();
    for defender in [
        SprayDefender::BanguardHostsOnly,
        SprayDefender::Banguard,
        SprayDefender::Fail2ban,
        SprayDefender::Faillock,
    ] {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|k| k == defender.key())) {
            continue;
        }
        let mut ns = Netns::new();
        let mut addrs: Vec<String> = (0..bots).map(bot).collect();
        addrs.push(HOME.into());
        ns.add_lo_addrs(&addrs);
        let truth = Truth::new();
        let accounts =
            if defender == SprayDefender::BanguardHostsOnly { "enabled = false\n" } else { "learning = 0\n" };
        let fx = Fixture::new(&Policy { maxretry: MAXRETRY as u32, accounts, ..Policy::default() });
        let faillock = tempfile::Builder::new().prefix("bg-bf-faillock.").tempdir().expect("tempdir");
        let fl = format!("dir={} deny=3 unlock_time=600", faillock.path().display());
        let stack = match defender {
            SprayDefender::BanguardHostsOnly | SprayDefender::Banguard => {
                with_auth_lines(DEBIAN_SSHD_STACK, &[&fx.module_line(""), &truth.line()])
            }
            SprayDefender::Fail2ban => with_auth_lines(DEBIAN_SSHD_STACK, &[&truth.line()]),
            SprayDefender::Faillock => {
                // common-auth spelled out, with faillock around pam_unix.
                let rest: String = DEBIAN_SSHD_STACK.lines().skip(1).map(|l| format!("{l}\n")).collect();
                format!(
                    "auth requisite pam_faillock.so preauth {fl}\n{}\n\
                     auth [success=1 default=ignore] pam_unix.so nullok nodelay\n\
                     auth [default=die] pam_faillock.so authfail {fl}\n\
                     auth sufficient pam_faillock.so authsucc {fl}\n\
                     auth requisite pam_deny.so\n\
                     account required pam_faillock.so {fl}\n{rest}",
                    truth.line()
                )
            }
        };
        let srv =
            SshdServer::start(&mut ns, SshdOptions { max_auth_tries: 3, ..SshdOptions::with_stack(&stack) });
        let relay = (defender == SprayDefender::Fail2ban)
            .then(|| SyslogRelay::start(srv.dir().join("sshd.log"), srv.dir().join("auth.log")));
        let f2b = (defender == SprayDefender::Fail2ban)
            .then(|| Fail2ban::start_bench(&mut ns, &srv.dir().join("auth.log"), srv.port(), MAXRETRY));
        let listener = srv.listener_pid().expect("sshd listener pid");
        let home = srv.try_password(&ns, HOME, TEST_USER, &[TEST_PASSWORD]);
        assert!(home.success(), "{}: the owner's first login: {home:#?}", defender.name());
        let (sshd0, daemon0) = (cpu_of(listener), f2b.as_ref().map_or(0.0, Fail2ban::cpu));
        let before = truth.times(HOME).len();
        let t0 = Instant::now();
        let mut n = 0;
        while n < bots {
            let end = (n + 64).min(bots);
            let running: Vec<RunningLogin> = (n..end)
                .map(|i| {
                    let mut l = Login::new(Method::Password, &bot(i), TEST_USER, &["Winter2026!"]);
                    l.timeout = Duration::from_secs(15);
                    srv.spawn_login(&ns, &l)
                })
                .collect();
            for r in running {
                r.finish();
            }
            n = end;
        }
        let wall = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(2));
        wait_for_reaped(listener);
        let checked: usize = (0..bots).map(|i| truth.times(&bot(i)).len()).sum();
        let owner_ok =
            (0..3).filter(|_| srv.try_password(&ns, HOME, TEST_USER, &[TEST_PASSWORD]).success()).count();
        let cpu = cpu_of(listener) - sshd0 + f2b.as_ref().map_or(0.0, Fail2ban::cpu) - daemon0;
        eprintln!(
            "{}: {checked} checked, owner {owner_ok}/3, cpu {cpu:.2} s, wall {wall:.1} s",
            defender.name()
        );
        assert!(truth.times(HOME).len() >= before, "the home log");
        rows.push((defender, checked, owner_ok, cpu, wall));
        drop(relay);
        drop(f2b);
        drop(srv);
    }
    println!();
    println!(
        "# password spraying: {bots} addresses (each its own /24), one wrong password each, 64 at a time, against one account; \
         maxretry {MAXRETRY} per host; the owner logged in from home before, and tries three times from home after"
    );
    println!();
    println!(
        "| defender | passwords checked (of {bots}) | owner's logins from home after | server CPU s | wall s |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (d, checked, owner, cpu, wall) in &rows {
        println!("| {} | {checked} | {owner}/3 | {cpu:.2} | {wall:.1} |", d.name());
    }
    // The claims this benchmark makes for banguard: the budget, and the
    // owner never locked out.
    let budget = Config::default().accounts.budget as usize;
    for (d, checked, owner, _, _) in &rows {
        if *d == SprayDefender::Banguard {
            assert_eq!(*checked, budget, "banguard let {checked} passwords of the spray through");
            assert_eq!(*owner, 3, "banguard refused the owner");
        }
    }
}
