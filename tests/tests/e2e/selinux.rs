//! banguard's SELinux policy module (packaging/selinux) against Debian's
//! reference policy: it compiles with selinux-policy-dev, links into a copy
//! of the full `default` policy store (`semodule -p`: this machine's store
//! and kernel are never touched), and the resulting policy has the rules
//! that matter, and none for domains that do not authenticate.

use banguard_e2e::{require, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEVEL_MAKEFILE: &str = "/usr/share/selinux/devel/Makefile";

fn run(dir: &Path, argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The module compiled and linked into a copy of the `default` store;
/// returns the temp dir and the kernel policy file built there.
fn linked_policy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for f in ["banguard.te", "banguard.if", "banguard.fc"] {
        std::fs::copy(workspace_root().join("packaging/selinux").join(f), src.join(f)).unwrap();
    }
    run(&src, &["make", "-f", DEVEL_MAKEFILE, "banguard.pp"]);
    let root = tmp.path().join("root");
    for (from, to) in
        [("/var/lib/selinux/default", "var/lib/selinux"), ("/etc/selinux/default", "etc/selinux")]
    {
        std::fs::create_dir_all(root.join(to)).unwrap();
        run(tmp.path(), &["cp", "-a", from, &root.join(to).display().to_string()]);
    }
    let pp = src.join("banguard.pp").display().to_string();
    run(tmp.path(), &["semodule", "-p", &root.display().to_string(), "-s", "default", "-n", "-i", &pp]);
    let policy = std::fs::read_dir(root.join("etc/selinux/default/policy"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("policy.")))
        .expect("a kernel policy was built");
    (tmp, policy)
}

#[test]
fn policy_module_links_and_grants_only_what_banguard_needs() {
    if !require(
        "policy_module_links_and_grants_only_what_banguard_needs",
        true,
        &["make", "semodule", "sesearch"],
    ) {
        return;
    }
    assert!(Path::new(DEVEL_MAKEFILE).exists(), "selinux-policy-dev is installed (make deps)");
    let (tmp, policy) = linked_policy();
    let p = policy.display().to_string();
    let search = |args: &[&str]| {
        let mut argv = vec!["sesearch"];
        argv.extend_from_slice(args);
        argv.push(&p);
        run(tmp.path(), &argv)
    };
    // sshd's domain creates, writes, locks and maps the store files and the
    // runtime state, and what it creates in /var/lib and /run is labelled.
    for t in ["banguard_var_lib_t", "banguard_runtime_t"] {
        let rules = search(&["-A", "-s", "sshd_t", "-t", t, "-c", "file"]);
        for perm in ["create", "write", "lock", "map", "rename", "unlink"] {
            assert!(rules.contains(perm), "sshd_t lacks {perm} on {t}: {rules}");
        }
    }
    assert!(search(&["-T", "-s", "sshd_t", "-t", "var_lib_t"]).contains("banguard_var_lib_t banguard"));
    assert!(search(&["-A", "-s", "sshd_t", "-t", "banguard_conf_t", "-c", "file"]).contains("read"));
    // The other authenticating domains of this policy.
    for d in ["local_login_t", "remote_login_t", "xdm_t", "ftpd_t", "dovecot_auth_t", "sysadm_sudo_t"] {
        let rules = search(&["-A", "-s", d, "-t", "banguard_var_lib_t", "-c", "file"]);
        assert!(rules.contains("map") && rules.contains("lock"), "{d}: {rules}");
    }
    // The sync job runs nft/ipset/iptables in their domain, which may use
    // its pipes, and it manages the store.
    assert!(search(&["-T", "-s", "banguard_sync_t", "-t", "iptables_exec_t"]).contains("iptables_t"));
    assert!(
        search(&["-A", "-s", "banguard_sync_t", "-t", "iptables_exec_t", "-c", "file"]).contains("execute")
    );
    assert!(
        search(&["-A", "-s", "iptables_t", "-t", "banguard_sync_t", "-c", "fifo_file"]).contains("write")
    );
    assert!(
        search(&["-A", "-s", "banguard_sync_t", "-t", "banguard_var_lib_t", "-c", "file"]).contains("map")
    );
    assert!(search(&["-T", "-s", "init_t", "-t", "banguard_sync_exec_t"]).contains("banguard_sync_t"));
    // Nothing names banguard's types for a domain that does not
    // authenticate (rules on attributes, such as a backup tool's "read
    // every file", are the base policy's).
    let allowed = [
        "sshd_t",
        "local_login_t",
        "remote_login_t",
        "xdm_t",
        "ftpd_t",
        "dovecot_auth_t",
        "saslauthd_t",
        "cockpit_session_t",
        "sysadm_su_t",
        "staff_su_t",
        "user_su_t",
        "sysadm_sudo_t",
        "staff_sudo_t",
        "user_sudo_t",
        "banguard_sync_t",
    ];
    for t in ["banguard_var_lib_t", "banguard_runtime_t", "banguard_conf_t"] {
        for line in search(&["-A", "-t", t]).lines() {
            let mut words = line.split_whitespace();
            let (source, target) = (words.nth(1).unwrap_or(""), words.next().unwrap_or(""));
            // (A file type's own `filesystem associate` names it too.)
            if target.starts_with(t) && source != t {
                assert!(allowed.contains(&source), "{source} is given {t}: {line}");
            }
        }
    }
    for d in ["httpd_t", "crond_t", "named_t", "postfix_master_t"] {
        let rules = search(&["-A", "-s", d, "-t", "banguard_var_lib_t", "-c", "file"]);
        assert_eq!(rules.trim(), "", "{d} touches the store's files");
    }
    // The file contexts went into the store's file_contexts.
    let fc = std::fs::read_to_string(
        policy.parent().unwrap().parent().unwrap().join("contexts/files/file_contexts"),
    )
    .unwrap();
    for want in [
        "/var/lib/banguard(/.*)?\tsystem_u:object_r:banguard_var_lib_t:s0",
        "/run/banguard(/.*)?\tsystem_u:object_r:banguard_runtime_t:s0",
        "/etc/banguard(/.*)?\tsystem_u:object_r:banguard_conf_t:s0",
        "/usr/sbin/banguardctl\t--\tsystem_u:object_r:banguard_sync_exec_t:s0",
    ] {
        assert!(fc.contains(want), "file_contexts lacks {want:?}");
    }
}
