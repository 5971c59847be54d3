//! A real fail2ban-server in a test's network namespace: Debian's package
//! configuration copied into a temp dir (its jail.d emptied), its log,
//! socket, pid file and database in that dir, the test's own jail.local.
//! Its actions change only the namespace's firewall.

use crate::{Netns, wait_for};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

pub struct Fail2ban {
    dir: tempfile::TempDir,
}

impl Fail2ban {
    /// Starts fail2ban-server in `ns` with `jail_local` and `extra` files
    /// (paths under the config dir, e.g. `action.d/x.conf`; `@DIR@` in
    /// either stands for the temp dir), and waits until jail `ready_jail`
    /// answers.
    pub fn start(ns: &mut Netns, jail_local: &str, extra: &[(&str, String)], ready_jail: &str) -> Fail2ban {
        Fail2ban::start_with(ns, jail_local, extra, ready_jail, &[])
    }

    /// [`Fail2ban::start`] with empty `logs` created in the temp dir first
    /// (fail2ban refuses a jail whose log does not exist).
    pub fn start_with(
        ns: &mut Netns,
        jail_local: &str,
        extra: &[(&str, String)],
        ready_jail: &str,
        logs: &[&str],
    ) -> Fail2ban {
        Fail2ban::start_inner(ns, jail_local, extra, ready_jail, logs, None)
    }

    /// [`Fail2ban::start_with`] on a copy of `database`: fail2ban restores
    /// its bans at its start, as after a restart.
    pub fn start_with_database(
        ns: &mut Netns,
        jail_local: &str,
        database: &Path,
        ready_jail: &str,
        logs: &[&str],
    ) -> Fail2ban {
        Fail2ban::start_inner(ns, jail_local, &[], ready_jail, logs, Some(database))
    }

    fn start_inner(
        ns: &mut Netns,
        jail_local: &str,
        extra: &[(&str, String)],
        ready_jail: &str,
        logs: &[&str],
        database: Option<&Path>,
    ) -> Fail2ban {
        let dir = tempfile::Builder::new().prefix("bg-f2b.").tempdir().expect("tempdir");
        if let Some(db) = database {
            fs::copy(db, dir.path().join("f2b.sqlite3")).expect("copy the database");
        }
        let d = dir.path();
        let conf = d.join("conf");
        let out = Command::new("cp").arg("-a").arg("/etc/fail2ban").arg(&conf).output().expect("cp");
        assert!(out.status.success(), "copy /etc/fail2ban: {}", String::from_utf8_lossy(&out.stderr));
        // Debian's jail.d enables the sshd jail with the systemd back-end.
        for e in fs::read_dir(conf.join("jail.d")).expect("jail.d").flatten() {
            fs::remove_file(e.path()).expect("clear jail.d");
        }
        fs::write(
            conf.join("fail2ban.local"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/f2b.sock\n\
                 pidfile = {d}/f2b.pid\ndbfile = {d}/f2b.sqlite3\n",
                d = d.display()
            ),
        )
        .expect("write fail2ban.local");
        for log in logs {
            fs::write(d.join(log), "").unwrap_or_else(|e| panic!("create {log}: {e}"));
        }
        let here = |text: &str| text.replace("@DIR@", &d.display().to_string());
        for (name, text) in extra {
            fs::write(conf.join(name), here(text)).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        fs::write(conf.join("jail.local"), here(jail_local)).expect("write jail.local");
        let f = Fail2ban { dir };
        let mut cmd = ns.command([
            "fail2ban-server".as_ref(),
            "-f".as_ref(),
            "-x".as_ref(),
            "-c".as_ref(),
            conf.as_os_str(),
        ]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        ns.spawn(cmd);
        let ready = wait_for(Duration::from_secs(30), || {
            let out = f.client(ns, &["status", ready_jail]);
            out.contains("Currently failed").then_some(())
        });
        assert!(ready.is_some(), "fail2ban did not start; its log:\n{}", f.log());
        f
    }

    /// The temp dir (log, socket, database, `conf/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration directory fail2ban runs with.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// fail2ban's database (fail2ban.local's `dbfile`).
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("f2b.sqlite3")
    }

    /// `fail2ban-client -c CONF ARGS...` in the namespace; its stdout.
    pub fn client(&self, ns: &Netns, args: &[&str]) -> String {
        let conf = self.conf();
        let mut argv: Vec<&std::ffi::OsStr> =
            vec!["fail2ban-client".as_ref(), "-c".as_ref(), conf.as_os_str()];
        argv.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        let out = ns.run(argv);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("fail2ban.log")).unwrap_or_default()
    }
}

/// A syslog line's prefix as rsyslog writes /var/log/auth.log (RFC 3339
/// time), for `program[pid]`: what fail2ban's stock filters expect. Lines
/// of one pid are one session to fail2ban's sshd filter (it remembers the
/// address a session came from), so each client needs its own.
pub fn syslog_prefix(program: &str, pid: u32) -> String {
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, m, d) = banguard::duration::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00 bench {program}[{pid}]: ",
        t / 3600,
        t / 60 % 60,
        t % 60,
        now.subsec_micros()
    )
}
