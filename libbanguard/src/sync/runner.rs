//! How back-ends spawn commands. Argv only, never a shell; the caller picks
//! where they run (tests: inside a network namespace through `nsenter`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Spawns one command and collects its output.
///
/// Returns `Err` only when the command could not be run at all; a non-zero
/// exit is an `Ok(Output)` for the back-end to judge (`iptables -C` exits 1
/// for "no such rule").
pub trait Runner {
    /// Runs `program args`, writing `stdin` (if any) to its standard input.
    fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Output>;
}

impl<F> Runner for F
where
    F: Fn(&str, &[String], Option<&[u8]>) -> Result<Output>,
{
    fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Output> {
        self(program, args, stdin)
    }
}

/// Runs commands with [`std::process::Command`], optionally behind a prefix
/// such as `nsenter --target PID --net --mount --pid --`.
#[derive(Debug, Clone)]
pub struct SystemRunner {
    prefix: Vec<String>,
    timeout: Duration,
}

/// A hung `nft` or `iptables` (xtables lock, netlink stall) must not hold
/// the sync lock forever; a 100k-entry restore takes about a second.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where cron's short PATH (`/usr/bin:/bin`) does not look.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

impl Default for SystemRunner {
    fn default() -> Self {
        SystemRunner::new()
    }
}

impl SystemRunner {
    /// Runs programs directly.
    pub fn new() -> SystemRunner {
        SystemRunner { prefix: Vec::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// Runs every program as `prefix... program args...`; the prefix's
    /// first element is the program actually spawned.
    pub fn with_prefix<I, S>(prefix: I) -> SystemRunner
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SystemRunner { prefix: prefix.into_iter().map(Into::into).collect(), timeout: DEFAULT_TIMEOUT }
    }

    /// Kills a command that runs longer than `timeout` (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> SystemRunner {
        self.timeout = timeout;
        self
    }

    fn command(&self, program: &str, args: &[String]) -> Command {
        let mut c = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(resolve(first));
                c.args(rest).arg(program);
                c
            }
            None => Command::new(resolve(program)),
        };
        // Stable, parseable messages from iptables/ipset.
        c.args(args).env("LC_ALL", "C");
        c
    }
}

impl Runner for SystemRunner {
    fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Output> {
        let fail = |message: String| Error::Command {
            program: program.to_string(),
            args: args.to_vec(),
            status: None,
            stderr: message,
        };
        let mut child = self
            .command(program, args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        let result = collect(&mut child, stdin, self.timeout);
        match result {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(fail(format!("killed after {} s without finishing", self.timeout.as_secs()))),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(fail(format!("cannot talk to the process: {e}")))
            }
        }
    }
}

/// Feeds stdin and drains stdout/stderr on threads (a large restore or a
/// large listing fills a pipe), waiting at most `timeout`. `Ok(None)` means
/// the child was killed for taking too long; its readers are then left to
/// finish on their own, since a grandchild (behind `nsenter`) may still
/// hold the pipes.
fn collect(child: &mut Child, stdin: Option<&[u8]>, timeout: Duration) -> std::io::Result<Option<Output>> {
    if let (Some(mut pipe), Some(data)) = (child.stdin.take(), stdin) {
        let data = data.to_vec();
        // A child that exits early closes the pipe; its status says why.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_t = read_all(child.stdout.take());
    let err_t = read_all(child.stderr.take());
    let Some(status) = wait_timeout(child, timeout)? else {
        return Ok(None);
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Some(Output { status, stdout, stderr }))
}

fn read_all<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A bare program name found on PATH or in the sbin directories (root's
/// tools live there and cron's PATH lacks them); otherwise unchanged.
fn resolve(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Runs a command and turns a non-zero exit into [`Error::Command`].
pub(crate) fn run_ok(
    runner: &dyn Runner,
    program: &str,
    args: &[String],
    stdin: Option<&[u8]>,
) -> Result<Output> {
    let out = runner.run(program, args, stdin)?;
    if out.status.success() { Ok(out) } else { Err(failed(program, args, &out)) }
}

/// [`Error::Command`] for a finished command. stderr is cut short: nft
/// echoes the failing input line, which can be long.
pub(crate) fn failed(program: &str, args: &[String], out: &Output) -> Error {
    const MAX: usize = 4000;
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.trim().is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    if stderr.len() > MAX {
        let mut cut = MAX;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
        stderr.push_str(" [...]");
    }
    Error::Command { program: program.to_string(), args: args.to_vec(), status: out.status.code(), stderr }
}

/// Owned argv from string literals.
pub(crate) fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scripted runner for unit tests: answers by program + args and
    //! records every call.
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::process::ExitStatusExt;

    type Answer = Box<dyn Fn(&[String], Option<&str>) -> Option<(i32, String)>>;
    /// program, args, stdin
    type Call = (String, Vec<String>, Option<String>);

    #[derive(Default)]
    pub struct FakeRunner {
        answers: Vec<(String, Answer)>,
        pub calls: RefCell<Vec<Call>>,
    }

    impl FakeRunner {
        /// The first answer whose program matches and whose closure returns
        /// `Some((exit code, stdout-or-stderr))` is used; no match is exit 0.
        pub fn on(
            mut self,
            program: &str,
            f: impl Fn(&[String], Option<&str>) -> Option<(i32, String)> + 'static,
        ) -> Self {
            self.answers.push((program.to_string(), Box::new(f)));
            self
        }

        pub fn programs(&self) -> Vec<String> {
            self.calls.borrow().iter().map(|(p, a, _)| format!("{p} {}", a.join(" "))).collect()
        }
    }

    impl Runner for FakeRunner {
        fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Output> {
            let stdin = stdin.map(|s| String::from_utf8_lossy(s).into_owned());
            self.calls.borrow_mut().push((program.to_string(), args.to_vec(), stdin.clone()));
            for (p, f) in &self.answers {
                if p == program
                    && let Some((code, text)) = f(args, stdin.as_deref())
                {
                    let (stdout, stderr) = if code == 0 {
                        (text.into_bytes(), Vec::new())
                    } else {
                        (Vec::new(), text.into_bytes())
                    };
                    return Ok(Output { status: ExitStatus::from_raw(code << 8), stdout, stderr });
                }
            }
            Ok(Output { status: ExitStatus::from_raw(0), stdout: Vec::new(), stderr: Vec::new() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_argv_with_stdin_and_reports_failure() {
        let r = SystemRunner::new();
        let out = r.run("cat", &[], Some(b"hello")).unwrap();
        assert_eq!(out.stdout, b"hello");
        let out = r.run("sh", &argv(&["-c", "echo oops >&2; exit 3"]), None).unwrap();
        let e = failed("sh", &argv(&["-c", "x"]), &out).to_string();
        assert!(e.contains("exit code 3") && e.contains("oops"), "{e}");
        let e = r.run("/nonexistent/banguard-tool", &[], None).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/banguard-tool") && e.contains("cannot start"), "{e}");
    }

    #[test]
    fn large_stdin_and_stdout_do_not_deadlock() {
        let data = vec![b'x'; 4 << 20];
        let out = SystemRunner::new().run("cat", &[], Some(&data)).unwrap();
        assert_eq!(out.stdout.len(), data.len());
    }

    #[test]
    fn prefix_and_timeout() {
        let r = SystemRunner::with_prefix(["env", "BANGUARD_T=1"]);
        let out = r.run("sh", &argv(&["-c", "echo $BANGUARD_T"]), None).unwrap();
        assert_eq!(out.stdout, b"1\n");
        let r = SystemRunner::new().timeout(Duration::from_millis(200));
        let t = Instant::now();
        let e = r.run("sleep", &argv(&["5"]), None).unwrap_err().to_string();
        assert!(e.contains("killed after"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
