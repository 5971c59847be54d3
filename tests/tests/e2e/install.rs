//! `make install` / `make uninstall` into a DESTDIR, the pam-auth-update
//! profile inside a private mount namespace, and `make deb`'s package.
//! Nothing here writes outside temporary directories: the PAM files are
//! replaced by copies on bind mounts only the namespace sees.

use banguard_e2e::{artifacts, require, workspace_root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `make <args>` in the workspace, using the test profile's artifacts
/// (RELEASE= points the Makefile at them: no release build here).
fn make(args: &[&str]) -> String {
    let a = artifacts();
    let out = Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(workspace_root())
        .arg(format!("RELEASE={}", a.target_dir.display()))
        .args(args)
        .output()
        .expect("run make");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "make {args:?} failed:\n{text}");
    text
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn install_and_uninstall_into_destdir() {
    if !require("install_and_uninstall_into_destdir", true, &["make", "strip", "objdump"]) {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let destdir = format!("DESTDIR={}", d.display());
    let vars = [
        destdir.as_str(),
        "PREFIX=/opt/bg",
        "PAMDIR=/lib/security",
        "SYSTEMDUNITDIR=/usr/lib/systemd/system",
    ];
    make(&[&["install"], &vars[..]].concat());

    for (path, want) in [
        ("opt/bg/sbin/banguardctl", 0o755),
        ("lib/security/pam_banguard.so", 0o644),
        ("opt/bg/lib/libbanguard.so.0.1.0", 0o644),
        ("opt/bg/include/banguard.h", 0o644),
        ("opt/bg/lib/pkgconfig/banguard.pc", 0o644),
        ("opt/bg/share/man/man8/pam_banguard.8", 0o644),
        ("opt/bg/share/man/man8/banguardctl.8", 0o644),
        ("opt/bg/share/man/man5/banguard.toml.5", 0o644),
        ("etc/banguard/banguard.toml", 0o644),
        ("etc/banguard/banguard.d", 0o755),
        ("etc/cron.d/banguard", 0o644),
        ("usr/share/pam-configs/banguard", 0o644),
        ("usr/share/pam-configs/banguard-success", 0o644),
        ("usr/lib/systemd/system/banguard-sync.service", 0o644),
        ("usr/lib/systemd/system/banguard-sync.timer", 0o644),
        ("usr/lib/systemd/system/banguard-sync.path", 0o644),
        ("usr/lib/systemd/system/banguard-fleet.timer", 0o644),
        ("opt/bg/lib/tmpfiles.d/banguard.conf", 0o644),
        ("var/lib/banguard", 0o700),
    ] {
        assert_eq!(mode(&d.join(path)), want, "{path}");
    }
    assert_eq!(
        fs::read_link(d.join("opt/bg/lib/libbanguard.so.0")).unwrap(),
        Path::new("libbanguard.so.0.1.0")
    );
    assert_eq!(fs::read_link(d.join("opt/bg/lib/libbanguard.so")).unwrap(), Path::new("libbanguard.so.0"));
    let pc = fs::read_to_string(d.join("opt/bg/lib/pkgconfig/banguard.pc")).unwrap();
    assert!(pc.contains("libdir=/opt/bg/lib\n") && pc.contains("includedir=/opt/bg/include\n"), "{pc}");
    assert!(!pc.contains('@'), "unfilled placeholder in banguard.pc:\n{pc}");
    for so in ["lib/security/pam_banguard.so", "opt/bg/lib/libbanguard.so.0.1.0"] {
        let h = Command::new("objdump").arg("-h").arg(d.join(so)).output().unwrap();
        assert!(!String::from_utf8_lossy(&h.stdout).contains(".debug_info"), "{so} is not stripped");
    }
    // Paths follow PREFIX in the cron file and the units; cron steps aside
    // while the systemd timer is active.
    let cron = fs::read_to_string(d.join("etc/cron.d/banguard")).unwrap();
    assert!(cron.contains("/opt/bg/sbin/banguardctl sync --quiet"), "{cron}");
    assert!(cron.contains("systemctl -q is-active banguard-sync.timer"), "{cron}");
    let service = fs::read_to_string(d.join("usr/lib/systemd/system/banguard-sync.service")).unwrap();
    assert!(service.contains("ExecStart=/opt/bg/sbin/banguardctl sync"), "{service}");

    // A first install enables the sync on each ban (path unit) and every
    // minute (timer); here in the tree, offline.
    for link in ["paths.target.wants/banguard-sync.path", "timers.target.wants/banguard-sync.timer"] {
        let l = d.join("etc/systemd/system").join(link);
        assert!(
            fs::symlink_metadata(&l).is_ok_and(|m| m.file_type().is_symlink()),
            "{} missing",
            l.display()
        );
    }
    // A second install keeps the admin's config and says so, and an
    // admin's disabled unit stays disabled.
    fs::remove_file(d.join("etc/systemd/system/timers.target.wants/banguard-sync.timer")).unwrap();
    fs::write(d.join("etc/banguard/banguard.toml"), "# mine\n").unwrap();
    let out = make(&[&["install"], &vars[..]].concat());
    assert!(out.contains("banguard.toml.dist"), "{out}");
    assert_eq!(fs::read_to_string(d.join("etc/banguard/banguard.toml")).unwrap(), "# mine\n");
    assert!(d.join("etc/banguard/banguard.toml.dist").is_file());
    assert!(!d.join("etc/systemd/system/timers.target.wants/banguard-sync.timer").exists());

    make(&[&["uninstall"], &vars[..]].concat());
    let left: Vec<PathBuf> =
        files_under(d).iter().map(|p| p.strip_prefix(d).unwrap().to_path_buf()).collect();
    assert_eq!(
        left,
        [PathBuf::from("etc/banguard/banguard.toml")],
        "uninstall left more than the admin's config"
    );
    assert!(d.join("var/lib/banguard").is_dir(), "the store's directory is kept");
}

/// `pam-auth-update` with banguard's profiles, in a private mount
/// namespace on copies of /etc/pam.d (the machine's is never written): the
/// first profile alone puts `requisite pam_banguard.so` first in
/// common-auth with pam_unix's jump intact and banguard's account line in
/// common-account; with the second, the success line follows pam_permit;
/// `--remove` restores both files byte for byte. Then the generated files
/// drive two shapes of application through libpam (pam_unix swapped for a
/// password checker, the module pointed at a test store), five right
/// passwords each with maxretry 3: Dovecot's (authenticate, acct_mgmt) is
/// never refused with the first profile alone; one that calls
/// pam_authenticate alone is, after maxretry right passwords, unless the
/// second profile is on (what `doctor` warns about).
#[test]
fn pam_auth_update_profile() {
    if !require("pam_auth_update_profile", true, &["unshare", "pam-auth-update"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let profiles = workspace_root().join("conf/pam-configs");
    // A known starting point: Debian's stock unix profile only, whatever
    // else this machine has enabled.
    let script = format!(
        r#"set -e
for d in /etc/pam.d /usr/share/pam-configs /var/lib/pam; do
  t=$(mktemp -d -p {w}); cp -a "$d"/. "$t"/; mount --bind "$t" "$d"
done
rm -f /usr/share/pam-configs/*
printf 'Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\nAuth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nAccount-Type: Primary\nAccount:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nAccount-Initial:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\n' > /usr/share/pam-configs/unix
export DEBIAN_FRONTEND=noninteractive
pam-auth-update --package --force
cp /etc/pam.d/common-auth {w}/before-auth
cp /etc/pam.d/common-account {w}/before-account
cp {profiles}/banguard {profiles}/banguard-success /usr/share/pam-configs/
pam-auth-update --enable banguard
cp /etc/pam.d/common-auth {w}/first-auth
cp /etc/pam.d/common-account {w}/first-account
pam-auth-update --enable banguard-success
cp /etc/pam.d/common-auth {w}/both-auth
cp /etc/pam.d/common-account {w}/both-account
pam-auth-update --remove banguard banguard-success
cp /etc/pam.d/common-auth {w}/removed-auth
cp /etc/pam.d/common-account {w}/removed-account
"#,
        w = w.display(),
        profiles = profiles.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = |f: &str| -> Vec<String> {
        fs::read_to_string(w.join(f))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let first_auth = [
        "auth requisite pam_banguard.so",
        "auth [success=1 default=ignore] pam_unix.so nullok try_first_pass",
        "auth requisite pam_deny.so",
        "auth required pam_permit.so",
    ];
    assert_eq!(rules("first-auth"), first_auth);
    let mut both_auth = first_auth.to_vec();
    both_auth.push("auth optional pam_banguard.so authsucc");
    assert_eq!(rules("both-auth"), both_auth);
    for f in ["first-account", "both-account"] {
        assert!(rules(f).contains(&"account optional pam_banguard.so".to_string()), "{f}: {:?}", rules(f));
    }
    for f in ["auth", "account"] {
        assert_eq!(
            fs::read(w.join(format!("removed-{f}"))).unwrap(),
            fs::read(w.join(format!("before-{f}"))).unwrap(),
            "--remove must restore common-{f}"
        );
    }

    // The generated stacks, driven through libpam as two applications do.
    use banguard_e2e::fixture::{Fixture, Policy};
    use banguard_e2e::pamtest::{Confdir, PAM_PERM_DENIED, PAM_SUCCESS, Pam, write_password_checker};
    let logins = |profiles: &str, calls_acct_mgmt: bool| -> Vec<i32> {
        let fx = Fixture::new(&Policy { maxretry: 3, ..Policy::default() });
        let checker = fx.dir().join("checker.sh");
        write_password_checker(&checker, &fx.dir().join("evaluated.log"), "right");
        let module = format!("{} config={}", artifacts().pam_module.display(), fx.config.display());
        let adapt = |f: &str| -> Vec<String> {
            rules(f)
                .into_iter()
                .map(|l| {
                    l.replace("pam_banguard.so", &module)
                        .replace(
                            "pam_unix.so nullok try_first_pass",
                            &format!("pam_exec.so quiet expose_authtok {}", checker.display()),
                        )
                        .replace("pam_unix.so", "pam_permit.so")
                })
                .collect()
        };
        let conf = fx.dir().join("pam.d");
        let mut stack = adapt(&format!("{profiles}-auth"));
        stack.extend(adapt(&format!("{profiles}-account")));
        Confdir::new(&conf).service("app", &stack);
        (0..5)
            .map(|_| {
                let mut pam = Pam::start(&conf, "app", "alice");
                pam.rhost("192.0.2.5");
                pam.passwords(["right"]);
                let rc = pam.authenticate();
                if rc == PAM_SUCCESS && calls_acct_mgmt {
                    assert_eq!(pam.acct_mgmt(), PAM_SUCCESS);
                }
                pam.end(rc);
                rc
            })
            .collect()
    };
    assert_eq!(logins("first", true), [PAM_SUCCESS; 5], "Dovecot's shape, first profile alone");
    assert_eq!(
        logins("first", false),
        [PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS, PAM_PERM_DENIED, PAM_PERM_DENIED],
        "authenticate alone, first profile alone: banned after maxretry right passwords"
    );
    assert_eq!(logins("both", false), [PAM_SUCCESS; 5], "authenticate alone, both profiles");
    assert_eq!(logins("both", true), [PAM_SUCCESS; 5], "Dovecot's shape, both profiles");
}

/// `make deb`: the package's files, modes, fields, conffiles and
/// maintainer scripts.
#[test]
fn deb_package_contents() {
    if !require("deb_package_contents", true, &["make", "dpkg-deb", "strip", "gzip"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("banguard.deb");
    let stage = work.path().join("stage");
    // gzip -1: the test profile's unoptimised binaries are large, and xz
    // of them takes a minute on a busy machine.
    make(&[
        "deb",
        &format!("DEB_FILE={}", deb.display()),
        &format!("DEB_STAGE={}", stage.display()),
        "DEB_COMPRESS=-Zgzip -z1",
    ]);
    let listing = Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    for (file, perms) in [
        ("./usr/sbin/banguardctl", "-rwxr-xr-x root/root"),
        ("/security/pam_banguard.so", "-rw-r--r-- root/root"),
        ("/libbanguard.so.0.1.0", "-rw-r--r-- root/root"),
        ("/libbanguard.so.0 -> libbanguard.so.0.1.0", "lrwxrwxrwx root/root"),
        ("/libbanguard.so -> libbanguard.so.0", "lrwxrwxrwx root/root"),
        ("./usr/include/banguard.h", "-rw-r--r-- root/root"),
        ("/pkgconfig/banguard.pc", "-rw-r--r-- root/root"),
        ("./etc/banguard/banguard.toml", "-rw-r--r-- root/root"),
        ("./etc/cron.d/banguard", "-rw-r--r-- root/root"),
        ("./usr/share/pam-configs/banguard", "-rw-r--r-- root/root"),
        ("./usr/share/pam-configs/banguard-success", "-rw-r--r-- root/root"),
        ("./usr/share/man/man8/banguardctl.8.gz", "-rw-r--r-- root/root"),
        ("./usr/share/man/man8/pam_banguard.8.gz", "-rw-r--r-- root/root"),
        ("./usr/share/man/man5/banguard.toml.5.gz", "-rw-r--r-- root/root"),
        ("./lib/systemd/system/banguard-sync.timer", "-rw-r--r-- root/root"),
        ("./usr/lib/tmpfiles.d/banguard.conf", "-rw-r--r-- root/root"),
    ] {
        let line = listing.lines().find(|l| l.ends_with(file));
        let line = line.unwrap_or_else(|| panic!("{file} missing from the package:\n{listing}"));
        assert!(line.starts_with(perms), "{line}");
    }
    assert!(!listing.contains("./var/"), "the store's directory is made by postinst, not shipped");
    let field = |f: &str| {
        let o = Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "banguard");
    assert!(field("Depends").contains("libpam0g"), "{}", field("Depends"));
    let ctrl = work.path().join("ctrl");
    assert!(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl).status().unwrap().success());
    assert_eq!(
        fs::read_to_string(ctrl.join("conffiles")).unwrap(),
        "/etc/banguard/banguard.toml\n/etc/cron.d/banguard\n"
    );
    let prerm = fs::read_to_string(ctrl.join("prerm")).unwrap();
    assert!(prerm.contains("pam-auth-update --package --remove banguard banguard-success"), "{prerm}");
    let postinst = fs::read_to_string(ctrl.join("postinst")).unwrap();
    let runs_pam_auth_update =
        postinst.lines().any(|l| l.contains("pam-auth-update") && !l.trim_start().starts_with("echo"));
    assert!(!runs_pam_auth_update, "postinst must not touch PAM (a hint is fine):\n{postinst}");
    assert!(postinst.contains("install -d -m 0700 -o root -g root /var/lib/banguard"), "{postinst}");
    assert!(
        fs::read_to_string(ctrl.join("postrm")).unwrap().contains("rm -rf /var/lib/banguard /etc/banguard")
    );
    for s in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&ctrl.join(s)) & 0o111, 0o111, "{s} is not executable");
        assert!(
            Command::new("sh").arg("-n").arg(ctrl.join(s)).status().unwrap().success(),
            "{s}: sh -n failed"
        );
    }
}

/// `dpkg -i`, `pam-auth-update --enable`, `dpkg -r`, `dpkg -P` of the real
/// package, inside a private mount namespace where /usr, /etc, /var and
/// /run are overlays on a tmpfs: dpkg, its database and the maintainer
/// scripts see the machine's files, and every write vanishes with the
/// namespace. The machine's PAM stack and dpkg database are never changed.
#[test]
fn deb_install_remove_purge() {
    if !require("deb_install_remove_purge", true, &["make", "dpkg-deb", "dpkg", "unshare", "pam-auth-update"])
    {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let deb = w.join("banguard.deb");
    make(&[
        "deb",
        &format!("DEB_FILE={}", deb.display()),
        &format!("DEB_STAGE={}", w.join("stage").display()),
        "DEB_COMPRESS=-Zgzip -z1",
    ]);
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs {w}/ov
for d in usr etc var run; do
  mkdir -p {w}/ov/u-$d {w}/ov/w-$d
  mount -t overlay overlay -o lowerdir=/$d,upperdir={w}/ov/u-$d,workdir={w}/ov/w-$d /$d
done
# No systemd manager here: the maintainer scripts enable units (links in
# /etc) but never talk to this machine's systemd.
mount -t tmpfs tmpfs /run/systemd
export DEBIAN_FRONTEND=noninteractive
dpkg-query -W banguard >/dev/null 2>&1 && {{ echo "banguard is installed on this machine already"; exit 3; }}
cp /etc/pam.d/common-auth /run/common-auth.before
dpkg -i {deb}
echo "== units"
ls /etc/systemd/system/paths.target.wants/ /etc/systemd/system/timers.target.wants/ 2>/dev/null | grep banguard || true
systemctl --root=/ disable banguard-sync.timer 2>&1
dpkg -i {deb}
echo "== upgraded"
ls /etc/systemd/system/paths.target.wants/ /etc/systemd/system/timers.target.wants/ 2>/dev/null | grep banguard || true
echo "== installed"
stat -c '%a %U %n' /usr/sbin/banguardctl $(dpkg -L banguard | grep 'security/pam_banguard.so$') \
  /var/lib/banguard /etc/banguard/banguard.toml /etc/cron.d/banguard
/usr/sbin/banguardctl --version
cmp /etc/pam.d/common-auth /run/common-auth.before && echo "pam untouched by install"
pam-auth-update --enable banguard banguard-success
grep -h pam_banguard /etc/pam.d/common-auth | tr -s ' \t' ' '
echo "== refused"
echo 'auth requisite pam_banguard.so' > /etc/pam.d/by-hand
if dpkg -r banguard; then echo "removed despite a hand-written line"; exit 4; fi
test -e "$(dpkg -L banguard | grep 'security/pam_banguard.so$')" && echo "module still there"
rm /etc/pam.d/by-hand
echo "== removed"
dpkg -r banguard
grep -l pam_banguard /etc/pam.d/* || echo "no stack names pam_banguard"
ls /usr/sbin/banguardctl 2>/dev/null || echo "banguardctl gone"
cat /etc/banguard/banguard.toml >/dev/null && echo "config kept"
ls -l /etc/systemd/system/ | grep banguard || true
echo "== purged"
dpkg -P banguard
ls -lR /etc/systemd/system/ | grep banguard || echo "no unit links left"
test -e /etc/banguard || echo "/etc/banguard gone"
test -e /var/lib/banguard || echo "/var/lib/banguard gone"
"#,
        w = w.display(),
        deb = deb.display()
    );
    fs::create_dir(w.join("ov")).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}\n--- stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    let part = |name: &str| -> String {
        let start =
            stdout.find(&format!("== {name}\n")).unwrap_or_else(|| panic!("no `{name}` part:\n{all}"));
        let rest = &stdout[start + name.len() + 4..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())].to_string()
    };
    // The sync runs on each ban (path unit) and every minute (timer) as
    // installed; an admin's "disabled" survives an upgrade.
    let units = part("units");
    assert!(units.contains("banguard-sync.path") && units.contains("banguard-sync.timer"), "{all}");
    let upgraded = part("upgraded");
    assert!(upgraded.contains("banguard-sync.path") && !upgraded.contains("banguard-sync.timer"), "{all}");
    assert!(part("purged").contains("no unit links left"), "{all}");
    let installed = part("installed");
    for want in [
        "755 root /usr/sbin/banguardctl",
        "700 root /var/lib/banguard",
        "644 root /etc/banguard/banguard.toml",
        "644 root /etc/cron.d/banguard",
        "banguardctl 0.1.0",
        "pam untouched by install",
        "auth requisite pam_banguard.so",
        "auth optional pam_banguard.so authsucc",
    ] {
        assert!(installed.contains(want), "after dpkg -i, wanted `{want}`:\n{all}");
    }
    let module = installed.lines().find(|l| l.ends_with("/security/pam_banguard.so"));
    assert!(module.is_some_and(|l| l.starts_with("644 root /")), "the module's mode:\n{all}");
    assert!(part("refused").contains("module still there"), "{all}");
    let removed = part("removed");
    for want in ["no stack names pam_banguard", "banguardctl gone", "config kept"] {
        assert!(removed.contains(want), "after dpkg -r, wanted `{want}`:\n{all}");
    }
    let purged = part("purged");
    for want in ["/etc/banguard gone", "/var/lib/banguard gone"] {
        assert!(purged.contains(want), "after dpkg -P, wanted `{want}`:\n{all}");
    }
}

/// `banguardctl doctor --root` on an installation made by `make install`:
/// the good one passes, and each way of breaking it is a FAIL line that
/// says what to do, with exit 1.
#[test]
fn doctor_tells_a_working_installation_from_broken_ones() {
    if !require("doctor_tells_a_working_installation_from_broken_ones", true, &["make", "strip"]) {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let destdir = format!("DESTDIR={}", d.display());
    let pamdir = "/lib/x86_64-linux-gnu/security";
    let vars = [
        destdir.as_str(),
        "PREFIX=/usr",
        "PAMDIR=/lib/x86_64-linux-gnu/security",
        "SYSTEMDUNITDIR=/lib/systemd/system",
    ];
    // libpam's own modules, where doctor looks for the directory libpam uses.
    fs::create_dir_all(d.join(&pamdir[1..])).unwrap();
    fs::write(d.join(&pamdir[1..]).join("pam_unix.so"), b"").unwrap();
    make(&[&["install"], &vars[..]].concat());
    // The image's nft, for the default back-end.
    fs::create_dir_all(d.join("usr/sbin")).unwrap();
    fs::write(d.join("usr/sbin/nft"), b"").unwrap();
    fs::create_dir_all(d.join("etc/pam.d")).unwrap();
    let pam = |name: &str, text: &str| fs::write(d.join("etc/pam.d").join(name), text).unwrap();
    pam(
        "common-auth",
        "auth requisite pam_banguard.so\nauth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
    );
    pam("sshd", "# PAM configuration for sshd\n@include common-auth\naccount required pam_unix.so\n");
    pam(
        "vsftpd",
        "auth required pam_listfile.so item=user sense=deny file=/etc/ftpusers\nauth include system-auth-missing\n",
    );
    let doctor = || {
        let out = Command::new(&artifacts().banguardctl)
            .args(["--json", "doctor", "--root"])
            .arg(d)
            .output()
            .expect("run doctor");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), report)
    };
    let line = |report: &serde_json::Value, name: &str| -> (String, String) {
        let c = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).expect(name);
        (c["verdict"].as_str().unwrap().to_string(), c["detail"].as_str().unwrap().to_string())
    };
    let (code, good) = doctor();
    assert_eq!(code, Some(0), "{good:#}");
    assert_eq!(line(&good, "config").0, "ok", "{good:#}");
    assert_eq!(line(&good, "PAM module").0, "ok");
    let (verdict, stacks) = line(&good, "PAM stacks");
    assert_eq!(verdict, "ok", "{stacks}");
    assert!(
        stacks.contains("sshd (via /etc/pam.d/common-auth)") && stacks.contains("not: vsftpd"),
        "{stacks}"
    );
    assert!(line(&good, "sync job").1.contains("banguard-sync.timer"), "{good:#}");
    // No success line: a warning that names the stack, and Dovecot's
    // shape (no account line either).
    let (verdict, detail) = line(&good, "giving back");
    assert_eq!(verdict, "warn", "{detail}");
    assert!(detail.starts_with("sshd: no success line") && detail.contains("Dovecot"), "{detail}");
    // The two profiles' lines: nothing to warn about.
    pam(
        "common-auth",
        "auth requisite pam_banguard.so\nauth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth optional pam_banguard.so authsucc\n",
    );
    pam("common-account", "account optional pam_banguard.so\naccount required pam_unix.so\n");
    pam("sshd", "@include common-auth\n@include common-account\n");
    let (code, both) = doctor();
    assert_eq!(code, Some(0), "{both:#}");
    assert_eq!(line(&both, "giving back").0, "ok", "{both:#}");
    pam(
        "common-auth",
        "auth requisite pam_banguard.so\nauth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
    );
    pam("sshd", "# PAM configuration for sshd\n@include common-auth\naccount required pam_unix.so\n");

    let fails = |name: &str, why: &str| {
        let (code, report) = doctor();
        assert_eq!(code, Some(1), "{report:#}");
        let (verdict, detail) = line(&report, name);
        assert_eq!(verdict, "fail", "{name}: {detail}");
        assert!(detail.contains(why), "{name}: {detail}");
    };
    // A config others may change.
    let config = d.join("etc/banguard/banguard.toml");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    fails("config", "chmod go-w");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    // A store directory others may write in.
    let state = d.join("var/lib/banguard");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    fails("store", "chmod 700");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    // The module missing where libpam looks.
    let module = d.join(&pamdir[1..]).join("pam_banguard.so");
    fs::rename(&module, d.join("pam_banguard.so.away")).unwrap();
    fails("PAM module", "pam_banguard.so is missing");
    fs::rename(d.join("pam_banguard.so.away"), &module).unwrap();
    // No stack loads it.
    pam("common-auth", "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n");
    fails("PAM stacks", "banguard protects nothing");
    // No sync job.
    pam("common-auth", "auth requisite pam_banguard.so\n");
    for u in ["banguard-sync.timer", "banguard-sync.path", "banguard-sync.service"] {
        fs::remove_file(d.join("lib/systemd/system").join(u)).unwrap();
    }
    fs::remove_file(d.join("etc/cron.d/banguard")).unwrap();
    fails("sync job", "bans never reach the firewall");
    // No firewall tool for the configured back-end.
    fs::remove_file(d.join("usr/sbin/nft")).unwrap();
    fails("firewall", "nft is not installed");
}
