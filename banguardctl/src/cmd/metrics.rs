//! `metrics`: the Prometheus text exposition format (version 0.0.4), on
//! stdout or, from each sync run with `[metrics] enabled`, in a file for
//! node_exporter's textfile collector. The catalogue below is the one list
//! of what banguard exposes; banguardctl(8) prints it.

use crate::Outcome;
use crate::ctx::{Ctx, retry};
use crate::error::{Error, Result};
use banguard::store::metrics::Row;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One metric family: name, type, labels, what it counts and where from.
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static str,
    pub help: &'static str,
}

/// Everything `banguardctl metrics` prints, in this order.
pub const CATALOGUE: &[Family] = &[
    Family {
        name: "banguard_attempts_total",
        kind: "counter",
        labels: "service, outcome",
        help: "Attempts that reached the PAM module, by outcome: checked (the password went to the stack, counted before the check), given_back (of those, given back after a success), refused_banned, refused_account (the account is locked for unfamiliar sources), overload (not counted in time: refused unchecked). With the explicit preauth/authfail lines, checked counts the failures recorded. From the runtime state, folded into the store by each sync.",
    },
    Family {
        name: "banguard_bans_total",
        kind: "counter",
        labels: "origin, reason",
        help: "Bans made, by origin (banguard, crowdsec, fail2ban) and reason (maxretry, recidive, manual, fleet, import). Counted with the ban.",
    },
    Family {
        name: "banguard_bans_active",
        kind: "gauge",
        labels: "origin, kernel",
        help: "Bans in force, by origin and whether the kernel holds them (pushed by a sync; kernel=false: refused by the module or hosts.deny only).",
    },
    Family {
        name: "banguard_escalations_total",
        kind: "counter",
        labels: "",
        help: "Banned hosts sent to the kernel because they kept knocking ([sync] escalate_after).",
    },
    Family {
        name: "banguard_ban_to_kernel_seconds",
        kind: "histogram",
        labels: "le",
        help: "Time from a ban to the sync run that put it in the kernel (bans imported from fail2ban excepted).",
    },
    Family {
        name: "banguard_account_locks_total",
        kind: "counter",
        labels: "origin",
        help: "Accounts locked for unfamiliar sources, by origin (banguard, crowdsec).",
    },
    Family { name: "banguard_accounts_locked", kind: "gauge", labels: "", help: "Account locks in force." },
    Family {
        name: "banguard_accounts_tracked",
        kind: "gauge",
        labels: "",
        help: "Accounts tried from unfamiliar sources that the runtime state tracks.",
    },
    Family {
        name: "banguard_accounts_learning",
        kind: "gauge",
        labels: "",
        help: "1 while the account side is learning (it refuses nothing then).",
    },
    Family {
        name: "banguard_sync_runs_total",
        kind: "counter",
        labels: "result",
        help: "Sync runs, by result (ok, failed: a back-end failed).",
    },
    Family {
        name: "banguard_sync_last_run_timestamp_seconds",
        kind: "gauge",
        labels: "",
        help: "When the last sync run ended (Unix time).",
    },
    Family {
        name: "banguard_sync_last_success_timestamp_seconds",
        kind: "gauge",
        labels: "",
        help: "When the last sync run that succeeded ended (Unix time).",
    },
    Family {
        name: "banguard_sync_last_duration_seconds",
        kind: "gauge",
        labels: "",
        help: "How long the last sync run took.",
    },
    Family {
        name: "banguard_firewall_entries",
        kind: "gauge",
        labels: "backend",
        help: "Entries each back-end held after its last push that succeeded (the bans that go to the kernel).",
    },
    Family {
        name: "banguard_fleet_exchanges_total",
        kind: "counter",
        labels: "result",
        help: "Exchanges with the fleet's Local API, by result (ok, failed).",
    },
    Family {
        name: "banguard_fleet_up",
        kind: "gauge",
        labels: "",
        help: "1 when the last exchange with the fleet succeeded (only with [fleet] provider).",
    },
    Family {
        name: "banguard_fleet_last_success_timestamp_seconds",
        kind: "gauge",
        labels: "",
        help: "When the last exchange with the fleet succeeded (Unix time).",
    },
    Family {
        name: "banguard_fleet_pending_exports",
        kind: "gauge",
        labels: "",
        help: "Local bans waiting to be posted to the fleet.",
    },
    Family {
        name: "banguard_fleet_decisions_total",
        kind: "counter",
        labels: "outcome, reason",
        help: "Fleet decisions taken as bans, and left out by reason (refused, malformed, filtered, max_decisions).",
    },
    Family {
        name: "banguard_mail_total",
        kind: "counter",
        labels: "result",
        help: "Mail notices handed to sendmail, by result (sent, failed).",
    },
    Family {
        name: "banguard_mail_queued",
        kind: "gauge",
        labels: "",
        help: "Mail notices waiting to be sent.",
    },
    Family {
        name: "banguard_module_errors_total",
        kind: "counter",
        labels: "kind",
        help: "Troubles the PAM module met, by kind (overload, store, config, insecure, options, io, panic, ...). Appended by the module beside the trigger file, folded by each sync.",
    },
    Family {
        name: "banguard_store_bytes",
        kind: "gauge",
        labels: "file",
        help: "Size of the store, its write-ahead log and the runtime state.",
    },
];

pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let g = ctx.open_read()?;
    let rows = retry(|| g.metrics())?;
    if ctx.json {
        let samples: Vec<_> =
            rows.iter().map(|r| json!({ "name": r.name, "labels": r.labels, "value": r.value })).collect();
        ctx.print_json(&json!(samples))?;
    } else {
        ctx.print(&render(&rows))?;
    }
    Ok(Outcome::Ok)
}

/// The exposition text: each family of the catalogue with its samples
/// (a histogram's `_bucket`, `_sum`, `_count`); rows the catalogue does
/// not know (written by a newer build) are left out.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    for f in CATALOGUE {
        let samples: Vec<&Row> = rows
            .iter()
            .filter(|r| match f.kind {
                "histogram" => {
                    r.name.strip_prefix(f.name).is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
                }
                _ => r.name == f.name,
            })
            .collect();
        if samples.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", f.name, help_text(f.help), f.name, f.kind));
        for r in samples {
            let labels = if r.labels.is_empty() { String::new() } else { format!("{{{}}}", r.labels) };
            out.push_str(&format!("{}{} {}\n", r.name, labels, number(r.value)));
        }
    }
    out
}

/// HELP text escaped as the format wants (backslash, line feed).
fn help_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers without a fraction; others as Rust prints them.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Writes the metrics for node_exporter: a new file beside the target
/// (created exclusively, never through a link, root's, 0644), synced,
/// then renamed over it, so that a scrape sees the old file or the new
/// one. node_exporter reads `*.prom` only, so the temp file is ignored.
/// The directory is reached one component at a time without following a
/// link: Debian's /var/lib/prometheus belongs to the prometheus user, who
/// must not be able to swap node-exporter for a link to a directory of
/// root's.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| Error::msg(format!("[metrics] textfile {}: {e}", path.display()));
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::msg(format!("[metrics] textfile {}: not a file path", path.display())));
    };
    let dir_fd = match open_dir_nofollow(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::msg(format!(
                "[metrics] textfile {}: the directory {} does not exist (install prometheus-node-exporter, or set textfile)",
                path.display(),
                dir.display()
            )));
        }
        Err(e) => {
            return Err(Error::msg(format!(
                "[metrics] textfile {}: {} : {e}",
                path.display(),
                dir.display()
            )));
        }
    };
    let here = Path::new("/proc/self/fd").join(dir_fd.as_raw_fd().to_string());
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = here.join(format!(".banguard.prom.{}.{nanos}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        fs::rename(&tmp, here.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// Opens an absolute directory one component at a time, none of them
/// followed if it is a link (each opened below the one before through
/// /proc/self/fd).
fn open_dir_nofollow(dir: &Path) -> std::io::Result<fs::File> {
    use std::path::Component;
    let open = |p: &Path| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(p)
    };
    let mut current = open(Path::new("/"))?;
    for component in dir.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => {
                let below = Path::new("/proc/self/fd").join(current.as_raw_fd().to_string()).join(part);
                current = open(&below)?;
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a plain absolute path (no . or ..)",
                ));
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, labels: &str, value: f64) -> Row {
        Row { name: name.into(), labels: labels.into(), value }
    }

    #[test]
    fn families_come_with_help_and_type_and_unknown_rows_are_left_out() {
        let text = render(&[
            row("banguard_attempts_total", "service=\"sshd\",outcome=\"checked\"", 3.0),
            row("banguard_ban_to_kernel_seconds_bucket", "le=\"1\"", 1.0),
            row("banguard_ban_to_kernel_seconds_sum", "", 0.5),
            row("banguard_from_the_future", "", 1.0),
        ]);
        assert!(text.contains("# TYPE banguard_attempts_total counter\n"), "{text}");
        assert!(text.contains("banguard_attempts_total{service=\"sshd\",outcome=\"checked\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE banguard_ban_to_kernel_seconds histogram\n"), "{text}");
        assert!(text.contains("banguard_ban_to_kernel_seconds_sum 0.5\n"), "{text}");
        assert!(!text.contains("future"), "{text}");
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_readable_by_node_exporter() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("banguard.prom");
        fs::write(&path, "old").unwrap();
        write_textfile(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1, "no temp file left");

        let e = write_textfile(&t.path().join("none/banguard.prom"), "x").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        // A directory on the way swapped for a link is refused, not followed.
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("swapped")).unwrap();
        assert!(write_textfile(&t.path().join("swapped/banguard.prom"), "x").is_err());
        assert_eq!(fs::read_dir(&real).unwrap().count(), 0, "nothing written through the link");
        // A link at the file's own name is replaced, its target untouched.
        fs::write(real.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(real.join("victim"), t.path().join("linked.prom")).unwrap();
        write_textfile(&t.path().join("linked.prom"), "new\n").unwrap();
        assert_eq!(fs::read_to_string(real.join("victim")).unwrap(), "keep");
    }
}
