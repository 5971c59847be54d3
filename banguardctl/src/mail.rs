//! Mail notices about bans, sent by the sync job through the local
//! `sendmail` (argv only: `sendmail -oi -- <to>`; the message carries its
//! own headers). Nothing untrusted reaches a header: the host key is a
//! validated address or a sanitised name label, the service name is
//! reduced to `[A-Za-z0-9._-]`, `to`/`from` were checked when the config
//! was read. A hung sendmail is killed after [`SEND_TIMEOUT`].

use crate::output::{self, clean};
use banguard::config::{Config, MailConfig};
use banguard::policy::{ALL_SERVICES, AccountLock, Ban};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a notice may take to hand over.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A PAM service name made safe for a header and a command line.
pub fn safe_service(service: &str) -> String {
    if service == ALL_SERVICES {
        return "all services".into();
    }
    let s: String =
        service.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(64).collect();
    if s.is_empty() { "unknown".into() } else { s }
}

/// A header-safe host text: the key's display form, with anything outside
/// address/name characters dropped (defence in depth; keys are validated).
fn safe_host(ban: &Ban) -> String {
    ban.host
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".:/-_?".contains(*c))
        .take(253)
        .collect()
}

/// This machine's name, for the subject and the body.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || ".-".contains(*c)).take(64).collect();
    if h.is_empty() { "localhost".into() } else { h }
}

/// The subject line.
pub fn subject(ban: &Ban, host: &str) -> String {
    let what = if ban.service == ALL_SERVICES {
        "banned on all services".to_string()
    } else {
        format!("banned on {}", safe_service(&ban.service))
    };
    let length = match ban.length() {
        banguard::duration::BanTime::Permanent => "permanently".to_string(),
        l => format!("for {l}"),
    };
    format!("[banguard {host}] {} {what} {length}", safe_host(ban))
}

/// The whole message, headers included.
pub fn compose(config: &Config, ban: &Ban, now: i64) -> String {
    let host = hostname();
    let who = safe_host(ban);
    let service = safe_service(&ban.service);
    let mut m = String::new();
    m.push_str(&format!("From: {}\n", config.mail.from));
    m.push_str(&format!("To: {}\n", config.mail.to));
    m.push_str(&format!("Subject: {}\n", subject(ban, &host)));
    m.push_str("Auto-Submitted: auto-generated\n");
    m.push_str("MIME-Version: 1.0\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\n");
    m.push_str("Content-Transfer-Encoding: 8bit\n");
    m.push('\n');
    m.push_str(&format!("banguard on {host} banned {who} on {service}.\n\n"));
    m.push_str(&format!("  Host:          {who} (counted as {})\n", clean(&ban.host.db_key())));
    m.push_str(&format!("  Service:       {service}\n"));
    m.push_str(&format!("  Banned at:     {}\n", output::time_iso(ban.created)));
    match ban.expires {
        Some(e) => {
            m.push_str(&format!("  Length:        {}, until {}\n", output::length(ban), output::time_iso(e)))
        }
        None => m.push_str("  Length:        permanent (until unbanned)\n"),
    }
    m.push_str(&format!("  Failures:      {}\n", ban.failures));
    m.push_str(&format!("  Banned before: {} times within the lookback window\n", ban.prior_bans));
    m.push_str(&format!("  Reason:        {}\n", clean(&ban.reason)));
    let fw = match output::firewall(ban, config, now) {
        "yes" => "blocked in the firewall",
        "pending" => "pushed to the firewall by the sync job",
        "no" => "refused by PAM only (not pushed to the firewall)",
        _ => "no longer active",
    };
    m.push_str(&format!("  Firewall:      {fw}\n"));
    m.push_str("\nTo lift the ban, run as root:\n\n");
    // Only a service name the command line accepts as it is: a sanitised
    // one (a ban stored before the one rule for names) names no service,
    // and unbanning on all services lifts that ban too.
    let named = ban.service != ALL_SERVICES && banguard::config::check_service_name(&ban.service).is_ok();
    let svc = if named { format!(" --service {}", ban.service) } else { String::new() };
    m.push_str(&format!("  banguardctl unban {}{svc}\n", who));
    m.push_str("\n-- \nbanguard (banguardctl sync)\n");
    m
}

/// An account name made safe for a header: characters outside a plain
/// set dropped (the account key is already lowercased and cleaned).
fn safe_account(account: &str) -> String {
    let s: String =
        account.chars().filter(|c| c.is_ascii_alphanumeric() || "._-@+*".contains(*c)).take(64).collect();
    if s.is_empty() { "(unprintable name)".into() } else { s }
}

/// The message about an account locked for unfamiliar sources. It says
/// nothing about whether the account exists, and holds no password.
pub fn compose_account_lock(config: &Config, lock: &AccountLock, now: i64) -> String {
    let host = hostname();
    let who = safe_account(&lock.account);
    let length = banguard::duration::format_duration(lock.until - lock.created);
    let mut m = String::new();
    m.push_str(&format!("From: {}\n", config.mail.from));
    m.push_str(&format!("To: {}\n", config.mail.to));
    m.push_str(&format!(
        "Subject: [banguard {host}] account {who} locked for unfamiliar sources for {length}\n"
    ));
    m.push_str("Auto-Submitted: auto-generated\n");
    m.push_str("MIME-Version: 1.0\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\n");
    m.push_str("Content-Transfer-Encoding: 8bit\n");
    m.push('\n');
    m.push_str(&format!(
        "banguard on {host} locked account {} for unfamiliar sources: its budget of passwords\n\
         from places it never logged in from is used up (password spraying).\n\n",
        clean(&lock.account)
    ));
    m.push_str(&format!("  Account:       {}\n", clean(&lock.account)));
    m.push_str(&format!("  Locked at:     {}\n", output::time_iso(lock.created)));
    m.push_str(&format!("  Until:         {} ({length})\n", output::time_iso(lock.until)));
    m.push_str(&format!("  Passwords:     {} from unfamiliar sources\n", lock.passwords));
    m.push_str(&format!("  Sources:       {} addresses\n", lock.sources));
    let state = if lock.lifted.is_some() || lock.until <= now { "no longer in force" } else { "in force" };
    m.push_str(&format!("  State:         {state}\n"));
    m.push_str(
        "\nThe owner is not locked out: logins from the account's familiar networks,\n\
         with a key, and on the console work as before. Other sources are refused\n\
         before their password is checked, and each refusal counts against that\n\
         source, so bots that keep trying are banned.\n",
    );
    m.push_str("\nTo see the account, or lift the lock, run as root:\n\n");
    let arg = if who == "*" { "'*'".to_string() } else { who.clone() };
    m.push_str(&format!("  banguardctl history --user {arg}\n"));
    m.push_str(&format!("  banguardctl accounts unlock {arg}\n"));
    if who != lock.account {
        m.push_str("\n(The name holds characters left out above: `banguardctl accounts` lists it.)\n");
    }
    m.push_str("\n-- \nbanguard (banguardctl sync)\n");
    m
}

/// Hands `message` to sendmail. `Err` says why it was not accepted.
pub fn send(mail: &MailConfig, message: &str) -> Result<(), String> {
    let program = mail.sendmail.display().to_string();
    let mut child = Command::new(&mail.sendmail)
        .args(["-oi", "--", &mail.to])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Read stderr on a thread so a chatty sendmail cannot block on a full pipe.
    let reader = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.take(4096).read_to_string(&mut s);
            s
        })
    });
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(message.as_bytes()),
        None => Ok(()),
    };
    let deadline = Instant::now() + SEND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("{program} did not finish within {}s: killed", SEND_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting for {program}: {e}")),
        }
    };
    let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let stderr = clean(stderr.trim());
    let status = status?;
    if !status.success() {
        let code = status.code().map_or_else(|| "a signal".to_string(), |c| format!("exit code {c}"));
        let mut e = format!("{program} failed with {code}");
        if !stderr.is_empty() {
            e.push_str(&format!(": {stderr}"));
        }
        return Err(e);
    }
    written.map_err(|e| format!("writing to {program}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use banguard::HostKey;

    fn ban(service: &str, host: HostKey) -> Ban {
        Ban {
            id: 7,
            host,
            service: service.into(),
            created: 1_800_000_000,
            expires: Some(1_800_000_600),
            lifted: None,
            reason: "manual: line1\nBcc: evil@example.com".into(),
            failures: 5,
            prior_bans: 1,
            firewall: false,
            pushed: None,
            origin: Default::default(),
            carried: 0,
        }
    }

    #[test]
    fn headers_hold_nothing_untrusted() {
        let b = ban("ssh\nBcc: x@y", HostKey::Net("198.51.100.7/32".parse().unwrap()));
        let m = compose(&Config::default(), &b, 1_800_000_000);
        let (headers, body) = m.split_once("\n\n").unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc")), "{headers}");
        assert!(
            headers.contains("Subject: [banguard ")
                && headers.contains("198.51.100.7 banned on sshBccxy for 10m")
        );
        assert!(body.contains("Reason:        manual: line1?Bcc: evil@example.com"), "{body}");
        // The sanitised name is no service: the line lifts the ban on all
        // services instead of naming one that does not exist.
        assert!(body.contains("  banguardctl unban 198.51.100.7\n"), "{body}");
        let ok = compose(&Config::default(), &ban("sshd", b.host.clone()), 1_800_000_000);
        assert!(ok.contains("  banguardctl unban 198.51.100.7 --service sshd\n"), "{ok}");
        assert_eq!(headers.lines().count(), 7);
    }

    #[test]
    fn all_services_and_names() {
        let b = ban(ALL_SERVICES, HostKey::Name("dyn.example.net".into()));
        assert!(subject(&b, "h").ends_with("name:dyn.example.net banned on all services for 10m"));
        let m = compose(&Config::default(), &b, 1_800_000_000);
        assert!(m.contains("  banguardctl unban name:dyn.example.net\n"), "{m}");
    }

    #[test]
    fn missing_sendmail_is_an_error_not_a_panic() {
        let mail = MailConfig {
            enabled: true,
            to: "root".into(),
            from: "banguard".into(),
            sendmail: "/nonexistent/sendmail".into(),
        };
        let e = send(&mail, "x").unwrap_err();
        assert!(e.contains("cannot run /nonexistent/sendmail"), "{e}");
    }
}
