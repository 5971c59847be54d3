//! banguard core: config, addresses, bans and their rules, the engine, the
//! store, and the sync job with its firewall back-ends.
//!
//! Everything that matters lives here; `pam_banguard.so`, `banguardctl` and
//! `libbanguard.so` (the C ABI) are thin shells around this crate. The
//! README's "Where things live" names the file of each decision.
#![deny(unsafe_code)]

pub mod account;
pub mod addr;
pub mod ban;
pub mod config;
pub mod duration;
pub mod error;
pub mod lock;
pub mod policy;
pub mod store;
pub mod sync;
pub mod sys;
pub mod text;
pub mod trigger;

pub use addr::HostKey;
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use policy::{AttemptId, AttemptRef, Ban, Banguard, Request, Verdict};
