//! `banguard-authselect` (packaging/authselect), the way banguard's line
//! gets into the PAM stacks authselect owns on RHEL and Fedora. authselect
//! is not in Debian: `enable` and `disable` are checked by hand on a RHEL
//! machine (doc/rhel.md); here the part that edits a profile, `add-line`,
//! runs on profile files shaped like authselect's sssd profile.

use banguard_e2e::{require, workspace_root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const SYSTEM_AUTH: &str = "\
{imply \"with-smartcard\" if \"with-smartcard-required\"}
auth        required                                     pam_env.so
auth        required                                     pam_faildelay.so delay=2000000
auth        required                                     pam_faillock.so preauth silent                         {include if \"with-faillock\"}
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        [default=1 ignore=ignore success=ok]         pam_localuser.so                                       {exclude if \"with-smartcard\"}
auth        sufficient                                   pam_unix.so {if not \"without-nullok\":nullok}
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        sufficient                                   pam_sss.so forward_pass
auth        required                                     pam_faillock.so authfail                               {include if \"with-faillock\"}
auth        required                                     pam_deny.so

account     required                                     pam_unix.so
";

fn script(args: &[&str]) -> Output {
    Command::new("sh")
        .arg(workspace_root().join("packaging/authselect/banguard-authselect"))
        .args(args)
        .output()
        .expect("run banguard-authselect")
}

fn profile(dir: &Path, text: &str) {
    fs::create_dir_all(dir).unwrap();
    for f in ["system-auth", "password-auth"] {
        fs::write(dir.join(f), text).unwrap();
    }
}

/// authselect's conditionals: `{include if "feature"}` and friends, braces
/// balanced, feature names quoted.
fn conditionals_are_well_formed(text: &str) {
    for line in text.lines() {
        let (open, close) = (line.matches('{').count(), line.matches('}').count());
        assert_eq!(open, close, "unbalanced: {line}");
        for cond in line.split('{').skip(1) {
            let cond = cond.split('}').next().unwrap();
            assert_eq!(cond.matches('"').count() % 2, 0, "unquoted feature: {line}");
        }
    }
}

#[test]
fn the_line_goes_after_the_fail_delay_once_as_a_feature() {
    if !require("the_line_goes_after_the_fail_delay_once_as_a_feature", false, &["sh", "awk", "mktemp"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("custom/banguard");
    profile(&dir, SYSTEM_AUTH);
    let d = dir.display().to_string();
    let out = script(&["add-line", &d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["system-auth", "password-auth"] {
        let text = fs::read_to_string(dir.join(f)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.contains("pam_banguard.so")).expect("the line is in");
        assert!(lines[at - 1].contains("pam_faildelay.so"), "{text}");
        assert!(
            at < lines.iter().position(|l| l.contains("pam_unix.so")).unwrap(),
            "before the password modules"
        );
        let words: Vec<&str> = lines[at].split_whitespace().collect();
        assert_eq!(words, ["auth", "requisite", "pam_banguard.so", "{include", "if", "\"with-banguard\"}"]);
        conditionals_are_well_formed(&text);
        // Everything else is as it was.
        let without: Vec<&str> = lines.iter().copied().filter(|l| !l.contains("pam_banguard")).collect();
        assert_eq!(without, SYSTEM_AUTH.lines().collect::<Vec<_>>());
        assert_eq!(fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o644);
    }
    // A second run changes nothing.
    let before = fs::read_to_string(dir.join("system-auth")).unwrap();
    assert!(script(&["add-line", &d]).status.success());
    assert_eq!(fs::read_to_string(dir.join("system-auth")).unwrap(), before);
}

#[test]
fn profiles_it_cannot_place_the_line_in_are_refused_untouched() {
    if !require("profiles_it_cannot_place_the_line_in_are_refused_untouched", false, &["sh", "awk", "mktemp"])
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("no-auth", "account required pam_unix.so\n", "has no auth lines"),
        (
            "jump-first",
            "auth [default=1 ignore=ignore success=ok] pam_env.so\nauth required pam_faildelay.so\nauth sufficient pam_unix.so\n",
            "a jumping auth line",
        ),
    ];
    for (name, text, why) in cases {
        let dir = tmp.path().join(name);
        profile(&dir, text);
        let out = script(&["add-line", &dir.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read_to_string(dir.join("system-auth")).unwrap(), text, "{name}: untouched");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{name}: no temp file left: {leftovers:?}");
    }
    let out = script(&["bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usage: banguard-authselect enable | disable | status")
    );
}
