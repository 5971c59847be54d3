//! `make rpm`: the packages for RHEL 8 and later, built here with rpmbuild
//! from the glibc 2.28 build, and read back with rpm and rpmlint (Fedora's
//! checks: packaging/rpm/rpmlint.toml).

use banguard_e2e::{require, workspace_root};
use std::process::Command;

fn rpm_query(args: &[&str], file: &std::path::Path) -> String {
    let out = Command::new("rpm").args(args).arg(file).output().expect("run rpm");
    assert!(out.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn make_rpm_builds_packages_for_rhel() {
    let tools = ["make", "rpmbuild", "rpm", "rpmlint", "python3", "bzip2", "gzip"];
    if !require("make_rpm_builds_packages_for_rhel", true, &tools) {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| workspace_root().join("target").display().to_string());
    let out = Command::new("make")
        .args([
            "--no-print-directory",
            "rpm",
            &format!("RPM_DIST={}", out_dir.path().display()),
            &format!("TARGET_DIR={target}"),
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run make rpm");
    assert!(out.status.success(), "make rpm:\n{}", String::from_utf8_lossy(&out.stderr));
    let main = out_dir.path().join("x86_64/banguard-0.1.0-1.x86_64.rpm");
    let selinux = out_dir.path().join("noarch/banguard-selinux-0.1.0-1.noarch.rpm");
    let devel = out_dir.path().join("x86_64/banguard-devel-0.1.0-1.x86_64.rpm");

    // RHEL's paths.
    let files = rpm_query(&["-qlp"], &main);
    for want in [
        "/usr/lib64/security/pam_banguard.so",
        "/usr/lib64/libbanguard.so.0.1.0",
        "/usr/sbin/banguardctl",
        "/usr/sbin/banguard-authselect",
        "/usr/lib/systemd/system/banguard-sync.service",
        "/usr/lib/systemd/system/banguard-sync.timer",
        "/usr/lib/systemd/system/banguard-sync.path",
        "/usr/lib/tmpfiles.d/banguard.conf",
        "/etc/banguard/banguard.toml",
        "/var/lib/banguard",
        "/usr/share/man/man8/pam_banguard.8.gz",
        "/usr/share/man/man8/banguardctl.8.gz",
        "/usr/share/man/man5/banguard.toml.5.gz",
    ] {
        assert!(files.lines().any(|l| l == want), "{want} missing:\n{files}");
    }
    assert!(!files.contains("pam-configs") && !files.contains("cron.d"), "Debian's files stay out:\n{files}");
    assert_eq!(rpm_query(&["-qp", "--configfiles"], &main).trim(), "/etc/banguard/banguard.toml");
    // The sync units: enabled and started on a first install, never shipped
    // as links (an admin's choice survives an upgrade).
    let scripts = rpm_query(&["-qp", "--scripts"], &main);
    assert!(scripts.contains("systemctl enable --now banguard-sync.path banguard-sync.timer"), "{scripts}");
    assert!(!files.contains("/etc/systemd/system"), "{files}");
    let modes = rpm_query(&["-qp", "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]"], &main);
    assert!(modes.lines().any(|l| l == "drwx------ /var/lib/banguard"), "{modes}");
    assert!(rpm_query(&["-qlp"], &selinux).contains("/usr/share/selinux/packages/targeted/banguard.pp.bz2"));
    assert!(rpm_query(&["-qlp"], &devel).contains("/usr/include/banguard.h"));

    // No glibc symbol above RHEL 8's 2.28; the policy comes along under SELinux.
    let requires = rpm_query(&["-qp", "--requires"], &main);
    let newest = requires
        .lines()
        .filter_map(|l| l.split("(GLIBC_").nth(1))
        .filter_map(|v| {
            let v = v.split(')').next()?;
            let mut p = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((p.next()??, p.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("glibc requirements");
    assert!(newest <= (2, 28), "needs GLIBC_{}.{}:\n{requires}", newest.0, newest.1);
    assert!(requires.contains("(banguard-selinux if selinux-policy-targeted)"), "{requires}");

    // Scriptlets: the policy installed and files relabelled; nothing edits
    // a PAM stack (only a hint is printed).
    let scripts = rpm_query(&["-qp", "--scripts"], &selinux);
    assert!(
        scripts.contains("semodule")
            && scripts.contains("-i /usr/share/selinux/packages/targeted/banguard.pp.bz2"),
        "{scripts}"
    );
    assert!(scripts.contains("restorecon -R /etc/banguard /var/lib/banguard /run/banguard"), "{scripts}");
    let scripts = rpm_query(&["-qp", "--scripts"], &main);
    for line in scripts.lines().filter(|l| !l.trim_start().starts_with("echo")) {
        assert!(!line.contains("pam.d") && !line.contains("authselect"), "a scriptlet touches PAM: {line}");
    }

    // rpmlint with Fedora's checks: no errors.
    let lint = Command::new("rpmlint")
        .arg("-c")
        .arg(workspace_root().join("packaging/rpm/rpmlint.toml"))
        .args([&main, &selinux, &devel])
        .output()
        .expect("run rpmlint");
    let report = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && report.contains(" 0 errors"),
        "rpmlint:\n{report}{}",
        String::from_utf8_lossy(&lint.stderr)
    );
}
