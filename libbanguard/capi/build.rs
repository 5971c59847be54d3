//! Link arguments of `libbanguard.so` (the cdylib only; the rlib used by
//! Rust tests is unaffected):
//!
//! * SONAME `libbanguard.so.0`: the ABI major version. A C program linked
//!   with `-lbanguard` records `NEEDED libbanguard.so.0`; an incompatible
//!   change of `banguard.h` bumps it.
//! * `banguard.map`: exports `banguard_*` and nothing else (rustc already
//!   limits exports to `#[no_mangle]` items; the map is the second guard and
//!   states the rule where packagers look for it).

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let map = dir.join("banguard.map");
    println!("cargo:rerun-if-changed=banguard.map");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbanguard.so.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
}
