//! The release binaries for RHEL 8 and later: `make floor` builds the PAM
//! module, libbanguard and banguardctl against glibc 2.28's symbol
//! versions (cargo-zigbuild); none may need a newer symbol. (`make test`
//! then runs the PAM stack tests again with that build of the module.)

use banguard_e2e::{require, workspace_root};
use std::process::Command;

/// The highest `GLIBC_x.y` symbol version a binary needs.
fn newest_glibc(path: &std::path::Path) -> (u32, u32) {
    let out = Command::new("objdump").arg("-T").arg(path).output().expect("objdump");
    assert!(out.status.success(), "objdump -T {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the binary needs glibc")
}

#[test]
fn release_binaries_need_at_most_glibc_2_28() {
    if !require("release_binaries_need_at_most_glibc_2_28", false, &["make", "objdump", "python3"]) {
        return;
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| workspace_root().join("target").display().to_string());
    let out = Command::new("make")
        .args(["--no-print-directory", "floor", &format!("TARGET_DIR={target}")])
        .current_dir(workspace_root())
        .output()
        .expect("run make floor");
    assert!(out.status.success(), "make floor:\n{}", String::from_utf8_lossy(&out.stderr));
    let dir = std::path::Path::new(&target).join("x86_64-unknown-linux-gnu/release");
    for name in ["libpam_banguard.so", "libbanguard_capi.so", "banguardctl"] {
        let newest = newest_glibc(&dir.join(name));
        assert!(newest <= (2, 28), "{name} needs GLIBC_{}.{}", newest.0, newest.1);
    }
    // A positive control: the Debian 12 build of the same module needs
    // GLIBC_2.34, so the check reads real symbol versions.
    let host = newest_glibc(&banguard_e2e::artifacts().pam_module);
    assert!(host > (2, 28), "the host build needs only GLIBC_{}.{}: is this Debian 12?", host.0, host.1);
}
