//! Checks the namespace harness itself: it isolates and it cleans up.

use banguard_e2e::{Netns, require};

#[test]
fn netns_is_isolated_and_removed_on_drop() {
    if !require("netns_is_isolated_and_removed_on_drop", true, &["unshare", "nsenter", "ip"]) {
        return;
    }
    let pid;
    {
        let ns = Netns::new();
        pid = ns.init_pid();
        ns.add_lo_addr("127.0.0.2/8");
        ns.add_lo_addr("2001:db8::2/128");
        let out = ns.run_ok(["ip", "-o", "addr", "show", "dev", "lo"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("127.0.0.2/8"), "{text}");
        assert!(text.contains("2001:db8::2/128"), "{text}");
        // The host's lo does not get the address.
        let host =
            std::process::Command::new("ip").args(["-o", "addr", "show", "dev", "lo"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&host.stdout).contains("2001:db8::2"));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    // After drop the namespace's init is gone.
    let gone = banguard_e2e::wait_for(std::time::Duration::from_secs(5), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    assert!(gone.is_some(), "namespace init {pid} still alive after drop");
}
