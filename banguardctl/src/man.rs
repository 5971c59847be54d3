//! banguardctl(8), rendered from the clap definitions in `cli.rs` so the
//! page never drifts from `--help`, and pam_banguard(8), rendered from
//! doc/pam_banguard.md. Printed by the hidden `man` command; `make man` /
//! `make install` write them under target/release/man.

use crate::cli::{Cli, EXIT_STATUS};
use clap::{Arg, ArgAction, CommandFactory};
use clap_mangen::Man;
use std::io::{self, Write};

/// Writes pam_banguard(8), from its one source, to `w`.
pub fn render_pam_page(w: &mut dyn Write) -> io::Result<()> {
    let source = format!("banguard {}", env!("CARGO_PKG_VERSION"));
    let page = crate::mdman::render(
        include_str!("../../doc/pam_banguard.md"),
        "pam_banguard",
        "8",
        &date(),
        &source,
    );
    w.write_all(page.as_bytes())
}

/// Writes the whole page to `w`.
pub fn render(w: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    let man = Man::new(cmd.clone())
        .section("8")
        .date(date())
        .manual("System Administration")
        .source(format!("banguard {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    writeln!(w, ".SH SYNOPSIS")?;
    writeln!(
        w,
        "\\fBbanguardctl\\fR [\\fB\\-\\-config\\fR \\fIPATH\\fR] [\\fB\\-\\-json\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]"
    )?;
    man.render_description_section(w)?;

    writeln!(w, ".SH \"GLOBAL OPTIONS\"")?;
    for arg in visible_args(&cmd) {
        write_arg(w, arg)?;
    }

    writeln!(w, ".SH COMMANDS")?;
    // A command with commands of its own (`import fail2ban`) is shown as
    // each of them.
    let mut commands: Vec<(String, &clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let nested: Vec<_> =
            sub.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").collect();
        // One that runs without one of its own (`accounts`, = `accounts
        // list`) is shown itself too.
        if nested.is_empty() || !sub.is_subcommand_required_set() {
            commands.push((sub.get_name().to_string(), sub));
        }
        if !nested.is_empty() {
            commands.extend(nested.into_iter().map(|n| (format!("{} {}", sub.get_name(), n.get_name()), n)));
        }
    }
    for (name, sub) in commands {
        let mut synopsis = format!("\\fBbanguardctl {}\\fR", esc(&name));
        for arg in visible_args(sub) {
            synopsis.push(' ');
            synopsis.push_str(&usage_of(arg));
        }
        writeln!(w, ".SS \"{name}\"")?;
        writeln!(w, "{synopsis}")?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(w, ".PP")?;
            writeln!(w, "{}", text(&about.to_string()))?;
        }
        for arg in visible_args(sub) {
            write_arg(w, arg)?;
        }
    }

    // EXIT_STATUS holds "Exit status:" and "Environment:" paragraphs.
    let mut current: Option<&str> = None;
    for line in EXIT_STATUS.lines() {
        match line.trim_end() {
            "Exit status:" => {
                current = Some("EXIT STATUS");
                writeln!(w, ".SH \"EXIT STATUS\"")?;
            }
            "Environment:" => {
                current = Some("ENVIRONMENT");
                writeln!(w, ".SH ENVIRONMENT")?;
            }
            "" => {}
            l => {
                debug_assert!(current.is_some());
                let body = l.trim_start();
                // "  0  text" / "  BANGUARD_NOW  text" start an item;
                // deeper-indented lines continue it.
                let indent = l.len() - body.len();
                match body.split_once("  ") {
                    Some((tag, rest)) if indent <= 2 => {
                        writeln!(w, ".TP")?;
                        writeln!(w, "\\fB{}\\fR", esc(tag))?;
                        writeln!(w, "{}", text(rest.trim_start()))?;
                    }
                    _ => writeln!(w, "{}", text(body))?,
                }
            }
        }
    }

    writeln!(w, ".SH METRICS")?;
    writeln!(
        w,
        "{}",
        text(
            "banguardctl metrics prints these families in the Prometheus text format. Labels never carry an \
             address or a user name. A service has a label of its own when it has a section in the config or is \
             among the first 64 the store counted; others, and names that are not plain, count as \"other\". \
             Counters are as the last sync run counted them (gauges as they are now) and only grow, across syncs, \
             restarts and reboots (what the module counted after the last sync before a reboot is lost)."
        )
    )?;
    for f in crate::cmd::metrics::CATALOGUE {
        writeln!(w, ".TP")?;
        let labels = if f.labels.is_empty() { String::new() } else { format!("; {}", f.labels) };
        writeln!(w, "\\fB{}\\fR ({}{})", esc(f.name), f.kind, esc(&labels))?;
        writeln!(w, "{}", text(f.help))?;
    }
    writeln!(w, ".SH FILES")?;
    for (path, what) in [
        ("/etc/banguard/banguard.toml", "the configuration, see banguard.toml(5)"),
        ("/etc/banguard/banguard.d/*.toml", "drop-ins, read in name order after it"),
        ("/var/lib/banguard/banguard.db", "the store (0600 root), created on first use"),
        ("/run/banguard/sync.lock", "serialises syncs; sync.state is kept next to it"),
        ("/etc/cron.d/banguard", "runs banguardctl sync every minute where systemd is not running"),
        (
            "banguard-sync.timer, banguard-sync.path",
            "run banguardctl sync every minute and after each ban on systemd hosts",
        ),
    ] {
        writeln!(w, ".TP")?;
        writeln!(w, "\\fI{}\\fR", esc(path))?;
        writeln!(w, "{}", text(what))?;
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(
        w,
        "\\fBpam_banguard\\fR(8), \\fBbanguard.toml\\fR(5), \\fBpam\\-auth\\-update\\fR(8), \\fBnft\\fR(8), \\fBipset\\fR(8), \\fBhosts_access\\fR(5)"
    )?;
    man.render_version_section(w)?;
    Ok(())
}

fn visible_args(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    let top = cmd.get_name() == "banguardctl";
    cmd.get_arguments().filter(move |a| {
        !a.is_hide_set()
            && (top || !a.is_global_set())
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// `[--service SERVICE]`, `ADDR`, `[ADDR|CIDR|NAME]` in roff.
fn usage_of(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| format!("\\fI{}\\fR", esc(v)))
        .unwrap_or_else(|| format!("\\fI{}\\fR", esc(&arg.get_id().to_string().to_uppercase())));
    let core = if arg.is_positional() {
        value
    } else {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(l), _) => format!("\\fB\\-\\-{}\\fR", esc(l)),
            (None, Some(s)) => format!("\\fB\\-{s}\\fR"),
            (None, None) => String::new(),
        };
        if arg.get_action().takes_values() { format!("{flag} {value}") } else { flag }
    };
    if arg.is_required_set() { core } else { format!("[{core}]") }
}

fn write_arg(w: &mut dyn Write, arg: &Arg) -> io::Result<()> {
    writeln!(w, ".TP")?;
    let mut head = usage_of(arg);
    if let Some(s) = arg.get_short().filter(|_| arg.get_long().is_some()) {
        head = format!("\\fB\\-{s}\\fR, {}", head.trim_start_matches('[').trim_end_matches(']'));
    } else {
        head = head.trim_start_matches('[').trim_end_matches(']').to_string();
    }
    writeln!(w, "{head}")?;
    let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
    writeln!(w, "{}", text(&help))
}

/// Escapes roff's special characters inside a line.
fn esc(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// A paragraph of plain text: escaped, one input line per source line, no
/// line starting with a control character.
fn text(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = esc(l.trim());
            let l = l.replace('`', "");
            if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The page's date, YYYY-MM-DD: $SOURCE_DATE_EPOCH (reproducible builds)
/// or today.
fn date() -> String {
    let secs =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = banguard::duration::civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}
