//! banguard core: config, store, policy, addresses and firewall back-ends.
//!
//! Everything that matters lives here; `pam_banguard.so`, `banguardctl` and
//! `libbanguard.so` (the C ABI) are thin shells around this crate.
#![deny(unsafe_code)]

pub mod error;
pub mod sync;
pub mod sys;
pub mod trigger;

pub use error::{Error, Result};
pub mod addr;
pub mod config;
pub mod duration;
pub mod lock;
pub mod policy;
pub mod store;
pub mod text;

/// The SQLite binding the store uses, for callers that read it directly.
pub use rusqlite;

pub use addr::HostKey;
pub use config::Config;
pub use policy::{AttemptId, AttemptRef, Ban, Banguard, Request, Verdict};
