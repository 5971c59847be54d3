//! The turn lock: one `flock` on a file beside the runtime state, taken
//! around every read-modify-write of it (and around rebuilding it).
//!
//! Why not SQLite's busy handler alone: it sleeps and retries, so under a
//! flood a process that arrived late can keep taking the lock from one
//! that has waited for seconds, and the unlucky one runs out of time
//! (measured: 200 concurrent attempts left attempts waiting past 2 s). A
//! blocked `flock` sleeps in the kernel and is woken the moment the lock is
//! free, so no waiter sleeps through free turns; which waiter goes next is
//! the kernel's choice, not a strict queue. Measured (BENCHMARKS.md §4):
//! 1,000 attempts at once, none waited out 10 s.
//!
//! `flock` has no timeout. The first try never blocks; only when the lock
//! is taken does a helper thread wait in `flock`, on its own open of the
//! file, while the caller waits on a condition variable for at most the
//! configured time. The helper hands its file, locked, to a caller still
//! waiting; when every caller gave up, it lets go of the lock as soon as it
//! gets it (never of a caller's, which may hold a later turn by then).
//!
//! A guest in other programs' processes (sshd's, a daemon's), this keeps
//! what it leaves behind bounded and private:
//! - at most one helper (one thread, one open file) per lock file per
//!   process: later callers wait for the helper already parked in `flock`;
//! - before the first helper starts, the shared object holding this code
//!   is pinned for the rest of the process (libpam unloads the module at
//!   `pam_end`; a helper still waiting must find its code, and each fresh
//!   load of std would take another of the process's pthread keys);
//! - a process forked while a helper waits (sshd forks its unprivileged
//!   post-login process without exec) closes the helper's file in the
//!   child at once, so the child can neither hold nor take the turn;
//! - a signal that interrupts the helper's `flock` is retried, and any
//!   other failure while waiting is an overload: the attempt is refused
//!   unchecked, never let through uncounted.

use crate::error::{Error, Result};
use crate::sys;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The lock file that goes with a runtime state file.
pub fn lock_path(runtime: &Path) -> PathBuf {
    let name = runtime.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    runtime.with_file_name(format!("{name}.lock"))
}

/// An open lock file. Its directory must have been checked by the caller
/// (`store::check_dir`): the file is opened without following a link.
pub struct TurnLock {
    file: File,
    path: PathBuf,
    /// Device and inode: which lock file this is, for the parked helper.
    id: (u64, u64),
}

/// Held while it lives; dropping it lets the next waiter in.
pub struct Turn<'a> {
    /// The open file that holds the lock: the lock's own, or the one a
    /// helper thread waited on.
    held: Held<'a>,
}

enum Held<'a> {
    Own(&'a File),
    Handed(File),
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // An explicit unlock: a process forked while we held the lock (sshd
        // forks) shares the open file and would otherwise keep it locked.
        let _ = match &self.held {
            Held::Own(f) => f.unlock(),
            Held::Handed(f) => f.unlock(),
        };
    }
}

/// What the callers and a helper agree on, under one mutex, so a lock the
/// helper gets after every caller gave up is never kept.
#[derive(Default)]
struct Handover {
    /// Callers waiting for this helper's lock now.
    waiting: usize,
    /// The helper's file, locked: the turn of the first caller to take it.
    locked: Option<File>,
    /// The helper has finished: handed over, let go, or failed.
    done: bool,
    /// `flock` itself failed (not a signal: those are retried).
    failed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Handover>,
    ready: Condvar,
}

/// The helper parked in `flock` on one lock file.
struct Parked {
    /// The lock file's device and inode.
    id: (u64, u64),
    /// The process it runs in: a forked child finds its parent's entries
    /// in its copy of memory, without their threads.
    pid: u32,
    shared: Arc<Shared>,
}

/// This process's parked helpers, one per lock file at most.
static PARKED: Mutex<Vec<Parked>> = Mutex::new(Vec::new());

fn parked() -> MutexGuard<'static, Vec<Parked>> {
    PARKED.lock().unwrap_or_else(|p| p.into_inner())
}

fn handover(shared: &Shared) -> MutexGuard<'_, Handover> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl TurnLock {
    /// Opens (creating, mode 0600) the lock file at `path`.
    pub fn open(path: &Path) -> Result<TurnLock> {
        let file = open_file(path)?;
        let meta = file.metadata().map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        Ok(TurnLock { file, path: path.to_path_buf(), id: (meta.dev(), meta.ino()) })
    }

    fn overloaded(&self, started: Instant) -> Error {
        Error::Overloaded { path: self.path.clone(), waited: started.elapsed() }
    }

    /// Waits for this process's turn, at most `wait`.
    pub fn acquire(&self, wait: Duration) -> Result<Turn<'_>> {
        let started = Instant::now();
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(Turn { held: Held::Own(&self.file) }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(TryLockError::Error(e)) => {
                    return Err(Error::Io { path: self.path.clone(), source: e });
                }
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(self.overloaded(started));
            }
            let Some(shared) = self.join_helper() else {
                // No thread to be had (a sandbox, a limit, nowhere to pin
                // this code): retry in short sleeps instead.
                return self.poll_until(started, wait);
            };
            let state = handover(&shared);
            let (mut state, _) = shared
                .ready
                .wait_timeout_while(state, left, |s| s.locked.is_none() && !s.done)
                .unwrap_or_else(|p| p.into_inner());
            state.waiting -= 1;
            if let Some(file) = state.locked.take() {
                return Ok(Turn { held: Held::Handed(file) });
            }
            if state.failed || !state.done {
                // Timed out, or the wait itself broke: either way the
                // attempt cannot be counted, so it is not checked.
                return Err(self.overloaded(started));
            }
            // Another caller of this process took the helper's turn: try
            // again with what is left of the wait.
        }
    }

    /// Registers this caller with the helper parked on this lock file,
    /// starting one if there is none. `None`: no helper can be had.
    fn join_helper(&self) -> Option<Arc<Shared>> {
        let pid = std::process::id();
        let mut parked = parked();
        // A forked child's copy of its parent's helpers has no threads.
        parked.retain(|p| p.pid == pid);
        if let Some(p) = parked.iter().find(|p| p.id == self.id) {
            handover(&p.shared).waiting += 1;
            return Some(Arc::clone(&p.shared));
        }
        if !prepare_for_helpers() {
            return None;
        }
        // Its own open of the file: a lock the helper takes is never the
        // lock of the caller's file, so a helper nobody waits for any more
        // cannot release a turn the caller holds later.
        let waiter = open_file(&self.path).ok()?;
        let fd = waiter.as_raw_fd();
        if !sys::close_in_forked_children(fd) {
            return None;
        }
        let shared = Arc::new(Shared::default());
        handover(&shared).waiting = 1;
        let theirs = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("banguard-turn".into())
            .stack_size(64 * 1024)
            .spawn(move || wait_in_flock(waiter, &theirs));
        match spawned {
            Ok(_) => {
                parked.push(Parked { id: self.id, pid, shared: Arc::clone(&shared) });
                Some(shared)
            }
            Err(_) => {
                sys::forget_in_forked_children(fd);
                None
            }
        }
    }

    /// The fallback wait: `try_lock` every millisecond for `wait` from
    /// `started`.
    fn poll_until(&self, started: Instant, wait: Duration) -> Result<Turn<'_>> {
        let deadline = started + wait;
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(Turn { held: Held::Own(&self.file) }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TryLockError::WouldBlock) => return Err(self.overloaded(started)),
                Err(TryLockError::Error(e)) => return Err(Error::Io { path: self.path.clone(), source: e }),
            }
        }
    }
}

/// The helper's life: wait in `flock` (a signal is no reason to stop),
/// then hand the lock to a waiting caller or let go of it, and leave the
/// list of parked helpers in the same critical section.
fn wait_in_flock(waiter: File, shared: &Arc<Shared>) {
    let locked = loop {
        match waiter.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let fd = waiter.as_raw_fd();
    let mut parked = parked();
    let mut state = handover(shared);
    match locked {
        Ok(()) if state.waiting > 0 => state.locked = Some(waiter),
        Ok(()) => {
            let _ = waiter.unlock();
        }
        Err(_) => state.failed = true,
    }
    state.done = true;
    parked.retain(|p| !Arc::ptr_eq(&p.shared, shared));
    sys::forget_in_forked_children(fd);
    drop(state);
    drop(parked);
    shared.ready.notify_all();
}

/// Before the first helper of this process: pins the shared object that
/// holds this code (see the module's comment). False when it cannot be
/// pinned: then no helper runs.
fn prepare_for_helpers() -> bool {
    static PINNED: OnceLock<bool> = OnceLock::new();
    *PINNED.get_or_init(sys::keep_this_object_loaded)
}

/// Opens (creating, mode 0600) a lock file, never through a link.
fn open_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::Insecure {
                path: path.to_path_buf(),
                message: "is a symbolic link; banguard does not follow links it did not make: remove it"
                    .into(),
            },
            _ => Error::Io { path: path.to_path_buf(), source: e },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_gets_the_lock_when_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let a = TurnLock::open(&path).unwrap();
        let b = TurnLock::open(&path).unwrap();
        let held = a.acquire(Duration::from_secs(1)).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                drop(held);
            });
            let started = Instant::now();
            let turn = b.acquire(Duration::from_secs(5)).unwrap();
            assert!(started.elapsed() >= Duration::from_millis(50), "it waited for the holder");
            drop(turn);
        });
        drop(a.acquire(Duration::from_millis(10)).unwrap());
    }

    #[test]
    fn a_wait_that_runs_out_is_an_overload_and_leaves_the_lock_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let a = TurnLock::open(&path).unwrap();
        let b = TurnLock::open(&path).unwrap();
        let held = a.acquire(Duration::from_secs(1)).unwrap();
        let e = b.acquire(Duration::from_millis(50)).err().unwrap();
        assert!(matches!(e, Error::Overloaded { .. }), "{e}");
        assert!(e.to_string().contains("runtime.db.lock"), "{e}");
        drop(held);
        // The abandoned helper takes the lock and lets go of it at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match a.file.try_lock() {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("the lock stayed taken after the waiter gave up: {e}"),
            }
        }
    }

    #[test]
    fn an_abandoned_waiter_never_releases_a_later_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let a = TurnLock::open(&path).unwrap();
        let b = TurnLock::open(&path).unwrap();
        let held = a.acquire(Duration::from_secs(1)).unwrap();
        assert!(matches!(b.acquire(Duration::from_millis(30)), Err(Error::Overloaded { .. })));
        // The holder lets go: b's abandoned helper gets the lock and lets go
        // of it, while b (the same store, used again) takes a new turn.
        drop(held);
        let turn = b.acquire(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            matches!(a.file.try_lock(), Err(TryLockError::WouldBlock)),
            "b's turn must hold until b lets go, whatever its old helper did"
        );
        drop(turn);
        drop(a.acquire(Duration::from_millis(100)).unwrap());
    }

    /// Open files of this process on `path`.
    fn open_files_on(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    #[test]
    fn waits_that_run_out_share_one_parked_helper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let a = TurnLock::open(&path).unwrap();
        let b = TurnLock::open(&path).unwrap();
        let held = a.acquire(Duration::from_secs(1)).unwrap();
        for _ in 0..30 {
            assert!(matches!(b.acquire(Duration::from_millis(5)), Err(Error::Overloaded { .. })));
        }
        // a's file, b's file and one helper's: not one per timed-out wait.
        assert_eq!(open_files_on(&path), 3);
        drop(held);
        // The helper finds nobody waiting: it lets go and closes its file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while open_files_on(&path) > 2 {
            assert!(Instant::now() < deadline, "the parked helper never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(b.acquire(Duration::from_millis(100)).unwrap());
    }

    #[test]
    fn callers_in_many_threads_all_get_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let holder = TurnLock::open(&path).unwrap();
        let held = holder.acquire(Duration::from_secs(1)).unwrap();
        let turns = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let mine = TurnLock::open(&path).unwrap();
                    let turn = mine.acquire(Duration::from_secs(10)).unwrap();
                    turns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    drop(turn);
                });
            }
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        assert_eq!(turns.into_inner(), 8);
    }

    #[test]
    fn the_fallback_wait_is_bounded_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.db.lock");
        let a = TurnLock::open(&path).unwrap();
        let b = TurnLock::open(&path).unwrap();
        let held = a.acquire(Duration::from_secs(1)).unwrap();
        let e = b.poll_until(Instant::now(), Duration::from_millis(30)).err().unwrap();
        assert!(matches!(e, Error::Overloaded { waited, .. } if waited >= Duration::from_millis(30)), "{e}");
        drop(held);
        drop(b.poll_until(Instant::now(), Duration::from_millis(30)).unwrap());
    }

    #[test]
    fn a_link_in_place_of_the_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("runtime.db.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = TurnLock::open(&path).err().unwrap();
        assert!(matches!(e, Error::Insecure { .. }), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }
}
