//! A stand-in for `banguard-sync.path` on a machine without systemd: an
//! inotify watch on the trigger's directory that runs `banguardctl sync`
//! inside a test namespace on each close-after-write of the trigger (what
//! `PathChanged=` reacts to). systemd's own start-up of the oneshot service
//! (a few ms to tens of ms) is not included. [`PathUnit::every`] stands in
//! for cron's line instead.

use crate::artifacts;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Stands in for `banguard-sync.path`: an inotify watch on the trigger's
/// directory that runs `banguardctl sync` inside the namespace.
pub struct PathUnit {
    stop: Arc<AtomicBool>,
    /// Syncs that ran and succeeded.
    pub syncs: Arc<AtomicUsize>,
    /// CPU time of those syncs, in clock ticks (what the sync job costs).
    pub cpu_ticks: Arc<AtomicU64>,
    /// When each change of the trigger was seen (the watching stand-in).
    pub triggered: Arc<Mutex<Vec<SystemTime>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PathUnit {
    /// Watches `trigger` and runs `banguardctl --config CONFIG sync` in the
    /// namespace of `init_pid` on each change.
    pub fn start(init_pid: u32, trigger: &Path, config: &Path) -> PathUnit {
        let dir = trigger.parent().expect("trigger has a directory").to_path_buf();
        let name = trigger.file_name().expect("trigger has a name").to_os_string();
        fs::create_dir_all(&dir).expect("create the trigger directory");
        // SAFETY: inotify_init1 has no preconditions; the fd is ours.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let cdir = CString::new(dir.as_os_str().as_bytes()).expect("no NUL in a temp path");
        let mask = libc::IN_CLOSE_WRITE | libc::IN_ATTRIB | libc::IN_MOVED_TO | libc::IN_CREATE;
        // SAFETY: fd is a live inotify fd and cdir a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, cdir.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch: {}", std::io::Error::last_os_error());
        let (stop, syncs) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let cpu_ticks = Arc::new(AtomicU64::new(0));
        let (stop2, syncs2, cpu2) = (stop.clone(), syncs.clone(), cpu_ticks.clone());
        let triggered = Arc::new(Mutex::new(Vec::new()));
        let triggered2 = triggered.clone();
        let ctl = artifacts().banguardctl.clone();
        let config = config.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, a bounded timeout.
                let n = unsafe { libc::poll(&mut pfd, 1, 100) };
                if n <= 0 {
                    continue;
                }
                // SAFETY: reading into a buffer we own, of its length.
                let len = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if len <= 0 || !events_name(&buf[..len as usize], name.as_bytes()) {
                    continue;
                }
                triggered2.lock().expect("lock").push(SystemTime::now());
                sync_once(init_pid, &ctl, &config, &syncs2, &cpu2);
            }
            // SAFETY: closing the fd this thread owns, once.
            unsafe { libc::close(fd) };
        });
        PathUnit { stop, syncs, cpu_ticks, triggered, thread: Some(thread) }
    }

    /// Stands in for cron's line instead: `banguardctl sync` every
    /// `period`, the first one `period` after the start (an attack that
    /// begins right after a run waits longest).
    pub fn every(init_pid: u32, period: std::time::Duration, config: &Path) -> PathUnit {
        let (stop, syncs) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let cpu_ticks = Arc::new(AtomicU64::new(0));
        let (stop2, syncs2, cpu2) = (stop.clone(), syncs.clone(), cpu_ticks.clone());
        let ctl = artifacts().banguardctl.clone();
        let config = config.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut next = std::time::Instant::now() + period;
            while !stop2.load(Ordering::Relaxed) {
                if std::time::Instant::now() >= next {
                    sync_once(init_pid, &ctl, &config, &syncs2, &cpu2);
                    next += period;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        PathUnit { stop, syncs, cpu_ticks, triggered: Arc::default(), thread: Some(thread) }
    }
}

/// Runs one `banguardctl sync` in the namespace and adds up its CPU.
fn sync_once(init_pid: u32, ctl: &Path, config: &Path, syncs: &AtomicUsize, cpu_ticks: &AtomicU64) {
    // A shell runs the sync and then reports its own stat line, whose
    // cutime/cstime hold the sync's CPU time.
    let out = Command::new("nsenter")
        .arg("--target")
        .arg(init_pid.to_string())
        .args(["--net", "--mount", "--pid", "--", "sh", "-c"])
        .arg("\"$@\" sync --quiet || exit $?; cat /proc/$$/stat")
        .arg("sh")
        .arg(ctl)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            syncs.fetch_add(1, Ordering::Relaxed);
            cpu_ticks.fetch_add(children_ticks(&String::from_utf8_lossy(&o.stdout)), Ordering::Relaxed);
        }
        Ok(o) => eprintln!("sync failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("cannot run sync: {e}"),
    }
}

impl Drop for PathUnit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a buffer of inotify events names `name`.
fn events_name(mut buf: &[u8], name: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    while buf.len() >= HEADER {
        // The name length is the last u32 of the header.
        let len = u32::from_ne_bytes(buf[HEADER - 4..HEADER].try_into().expect("4 bytes")) as usize;
        let end = (HEADER + len).min(buf.len());
        let field = &buf[HEADER..end];
        let event_name = field.split(|&b| b == 0).next().unwrap_or(&[]);
        if event_name == name {
            return true;
        }
        buf = &buf[end..];
    }
    false
}

/// cutime + cstime (fields 16 and 17) of a `/proc/PID/stat` line: the CPU
/// of the children the process waited for, in clock ticks.
fn children_ticks(stat: &str) -> u64 {
    // The command name (field 2) may hold spaces; fields count after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3, so field N is fields[N - 3].
    let get = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(16) + get(17)
}

/// Clock ticks per second, for [`PathUnit::cpu_ticks`].
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
