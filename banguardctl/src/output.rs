//! Tables for people, local times, and the JSON shapes shared by commands.

use banguard::config::Config;
use banguard::duration::format_duration;
use banguard::policy::Ban;
use serde_json::{Value, json};

/// A plain text table: columns separated by two spaces, the last column
/// not padded.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i + 1 < n {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 2));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

pub use banguard::text::{clean, time, time_iso};

/// "7m12s", or "0s" once past.
pub fn until(t: i64, now: i64) -> String {
    format_duration(t - now)
}

/// "sshd" or "all" for a ban's service.
pub fn service_label(service: &str) -> &str {
    // Not "all": that could be a PAM service's name.
    if service == banguard::policy::ALL_SERVICES { "all services" } else { service }
}

/// A ban's state at `now`.
pub fn state(ban: &Ban, now: i64) -> &'static str {
    if ban.lifted.is_some() {
        "lifted"
    } else if ban.is_active(now) {
        "active"
    } else {
        "expired"
    }
}

/// Whether the sync job pushes this ban to the firewall: "yes" (pushed),
/// "pending" (at the next sync), "no" (PAM refuses it; the firewall does
/// not), "-" (not active).
pub fn firewall(ban: &Ban, config: &Config, now: i64) -> &'static str {
    if !ban.is_active(now) {
        return "-";
    }
    let wanted = !config.sync.backends.is_empty() && ban.goes_to_firewall(&config.sync);
    match (wanted, ban.pushed) {
        (true, Some(_)) => "yes",
        (true, None) => "pending",
        (false, _) => "no",
    }
}

/// Why an active ban is (or is about to be) in the kernel: "repeat
/// offender", "kept knocking", "manual", "scope all"; `None` when PAM alone
/// refuses it.
pub fn kernel_reason(ban: &Ban, config: &Config, now: i64) -> Option<&'static str> {
    if !ban.is_active(now) || config.sync.backends.is_empty() {
        return None;
    }
    ban.kernel_reason(&config.sync)
}

/// The FIREWALL cell: the state, and why for a ban that goes there
/// ("yes (kept knocking)").
pub fn firewall_cell(ban: &Ban, config: &Config, now: i64) -> String {
    let state = firewall(ban, config, now);
    match kernel_reason(ban, config, now) {
        Some(why) => format!("{state} ({why})"),
        None => state.to_string(),
    }
}

/// "10m", "permanent".
pub fn length(ban: &Ban) -> String {
    ban.length().to_string()
}

/// The JSON shape of a ban, shared by every command.
pub fn ban_json(ban: &Ban, config: &Config, now: i64) -> Value {
    json!({
        "id": ban.id,
        "host": ban.host.to_string(),
        "key": ban.host.db_key(),
        "service": service_label(&ban.service),
        "state": state(ban, now),
        "since": ban.created,
        "since_iso": time_iso(ban.created),
        "expires": ban.expires,
        "expires_iso": ban.expires.map(time_iso),
        "expires_in": ban.expires.filter(|_| ban.is_active(now)).map(|e| e - now),
        "length": length(ban),
        "lifted": ban.lifted,
        "failures": ban.failures,
        "prior_bans": ban.prior_bans,
        "reason": ban.reason,
        "origin": ban.origin,
        "carried_bans": ban.carried,
        "firewall": firewall(ban, config, now),
        "kernel_reason": kernel_reason(ban, config, now),
        "pushed": ban.pushed,
    })
}

/// "expires in" cell: "7m12s", "permanent", "expired", "lifted".
pub fn expires_cell(ban: &Ban, now: i64) -> String {
    match (ban.lifted, ban.expires) {
        (Some(_), _) => "lifted".into(),
        (None, None) => "permanent".into(),
        (None, Some(e)) if e > now => until(e, now),
        (None, Some(_)) => "expired".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_trims() {
        let mut t = Table::new(&["A", "LONGER", "LAST"]);
        t.row(vec!["xxxx".into(), "y".into(), "free text".into()]);
        t.row(vec!["x".into(), "".into(), "".into()]);
        assert_eq!(t.render(), "A     LONGER  LAST\nxxxx  y       free text\nx\n");
    }
}
