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
//! configured time. The helper hands its file, locked, to the caller; a
//! helper still waiting when the caller gave up unlocks its own file as
//! soon as it gets the lock (never the caller's, which may hold a later
//! turn by then), and the shared object holding this code is kept loaded
//! for the rest of the process (libpam unloads the module at `pam_end`).

use crate::error::{Error, Result};
use crate::sys;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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

/// What the caller and the helper thread agree on, under one mutex, so a
/// lock the helper gets after the caller gave up is never kept.
#[derive(Default)]
struct Handover {
    /// The helper's file, locked: the caller's turn.
    locked: Option<File>,
    /// flock itself failed.
    failed: bool,
    /// The caller stopped waiting.
    abandoned: bool,
}

impl TurnLock {
    /// Opens (creating, mode 0600) the lock file at `path`.
    pub fn open(path: &Path) -> Result<TurnLock> {
        Ok(TurnLock { file: open_file(path)?, path: path.to_path_buf() })
    }

    fn io_error(&self, source: io::Error) -> Error {
        Error::Io { path: self.path.clone(), source }
    }

    /// Waits for this process's turn, at most `wait`.
    pub fn acquire(&self, wait: Duration) -> Result<Turn<'_>> {
        match self.file.try_lock() {
            Ok(()) => return Ok(Turn { held: Held::Own(&self.file) }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(self.io_error(e)),
        }
        let started = Instant::now();
        // Its own open of the file: a lock the helper takes is never the
        // lock of this file, so an abandoned helper cannot release a turn
        // the caller holds later.
        let waiter = open_file(&self.path)?;
        let shared = Arc::new((Mutex::new(Handover::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let spawned =
            std::thread::Builder::new().name("banguard-turn".into()).stack_size(64 * 1024).spawn(move || {
                let locked = waiter.lock();
                let (state, ready) = &*theirs;
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                match locked {
                    Ok(()) if state.abandoned => {
                        let _ = waiter.unlock();
                    }
                    Ok(()) => state.locked = Some(waiter),
                    Err(_) => state.failed = true,
                }
                ready.notify_all();
            });
        let helper = match spawned {
            Ok(h) => h,
            // No thread to be had (a sandbox, a limit): retry in short
            // sleeps instead, so the wait stays bounded all the same.
            Err(_) => return self.poll_until(started, wait),
        };
        let (state, ready) = &*shared;
        let state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (mut state, _) = ready
            .wait_timeout_while(state, wait, |s| s.locked.is_none() && !s.failed)
            .unwrap_or_else(|p| p.into_inner());
        if let Some(file) = state.locked.take() {
            drop(state);
            let _ = helper.join();
            return Ok(Turn { held: Held::Handed(file) });
        }
        if state.failed {
            drop(state);
            let _ = helper.join();
            return Err(self.io_error(io::Error::other("flock failed while waiting for the lock")));
        }
        state.abandoned = true;
        drop(state);
        // The helper still sleeps in flock and will run code of this object
        // when it wakes: the object must not be unloaded before then.
        sys::keep_this_object_loaded();
        drop(helper);
        Err(Error::Overloaded { path: self.path.clone(), waited: started.elapsed() })
    }
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

impl TurnLock {
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
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Overloaded { path: self.path.clone(), waited: started.elapsed() });
                }
                Err(TryLockError::Error(e)) => return Err(self.io_error(e)),
            }
        }
    }
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
