//! banguard core: config, store, policy, addresses and firewall back-ends.
//!
//! Everything that matters lives here; `pam_banguard.so`, `banguardctl` and
//! `libbanguard.so` (the C ABI) are thin shells around this crate.
#![deny(unsafe_code)]

pub mod error;
pub mod sys;
pub mod sync;

pub use error::{Error, Result};
