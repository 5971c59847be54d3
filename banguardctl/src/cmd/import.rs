//! `banguardctl import fail2ban`: reads, maps and checks everything
//! (`crate::fail2ban`), then writes the drop-in and stores the bans, and
//! prints what came over, what was approximated and what was not.

use crate::Outcome;
use crate::cli::{Fail2banArgs, ImportArgs, ImportSource};
use crate::ctx::{Ctx, read_clock, require_root, retry};
use crate::error::Result;
use crate::fail2ban::mapping::Status;
use crate::fail2ban::{self, DatabaseUse, Options, Plan};
use crate::output::{self, Table};
use banguard::policy::{Clock, Imported, SystemClock};
use banguard::text::clean;
use serde_json::json;

pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<Outcome> {
    match &args.source {
        ImportSource::Fail2ban(a) => from_fail2ban(ctx, a),
    }
}

fn from_fail2ban(ctx: &Ctx, args: &Fail2banArgs) -> Result<Outcome> {
    if args.show_mapping {
        ctx.print(&fail2ban::mapping::reference_table())?;
        return Ok(Outcome::Ok);
    }
    let opts = Options {
        from: args.from.clone(),
        database: args.database.clone(),
        output: args
            .output
            .clone()
            .unwrap_or_else(|| banguard::config::dropin_dir(&ctx.config_path).join("50-fail2ban.toml")),
        dry_run: args.dry_run,
        force: args.force,
        config_only: args.config_only,
        bans_only: args.bans_only,
    };
    if !opts.dry_run {
        require_root("import fail2ban")?;
    }
    fail2ban::check_output(&opts, &ctx.config_path)?;
    let now = if opts.dry_run { read_clock()?.now() } else { SystemClock.now() };
    let plan = fail2ban::plan(&opts, &ctx.config_path, now)?;
    let mut g = if opts.dry_run {
        ctx.open_read_with(plan.config.clone())?
    } else {
        ctx.open_write_with("import fail2ban", plan.config.clone())?
    };
    let outcome = retry(|| {
        fail2ban::apply(&plan, &opts, &mut g).map_err(|e| match e {
            crate::error::Error::Core(e) => e,
            other => banguard::Error::InvalidInput {
                what: "import",
                value: String::new(),
                message: other.to_string(),
            },
        })
    })?;
    let next = next_steps(&plan);
    if ctx.json {
        print_json(ctx, &plan, &opts, &outcome, &next, now)?;
        return Ok(Outcome::Ok);
    }
    let mut out = String::new();
    if opts.dry_run && !opts.bans_only {
        out.push_str(&format!("# {} (dry run: not written)\n", clean(&opts.output.display().to_string())));
        out.push_str(&plan.dropin);
        out.push('\n');
    }
    out.push_str(&format!(
        "fail2ban: {} ({} files read)\n",
        clean(&opts.from.display().to_string()),
        plan.files.len()
    ));
    for n in &plan.notes {
        out.push_str(&format!("  not read: {}: {}\n", clean(&n.file.display().to_string()), clean(&n.why)));
    }
    match &plan.database {
        DatabaseUse::Read { path, schema } => out.push_str(&format!(
            "database: {} (schema {schema}, read from a private copy)\n",
            clean(&path.display().to_string())
        )),
        DatabaseUse::None { reason } => out.push_str(&format!("database: {}\n", clean(reason))),
    }
    let state = match (opts.bans_only, outcome.written) {
        (true, _) => "not written (--bans-only)",
        (false, true) => "written",
        (false, false) => "not written (dry run)",
    };
    out.push_str(&format!("drop-in:  {}: {state}\n", clean(&opts.output.display().to_string())));
    if plan.config.accounts.enabled {
        // What fail2ban cannot carry over: say what applies instead.
        out.push_str(
            "accounts: fail2ban counts per address only; banguard also bounds password spraying per account \
             ([accounts] in banguard.toml(5), its own settings: nothing in fail2ban maps to them)\n",
        );
    }
    if !plan.changes.is_empty() {
        out.push_str("what the drop-in changes in banguard's settings:\n");
        for c in &plan.changes {
            out.push_str(&format!("  {c}\n"));
        }
    }
    out.push('\n');
    let mut items: Vec<_> = plan.mapping.items.iter().collect();
    items.sort_by_key(|i| i.status);
    let mut t = Table::new(&["STATUS", "WHERE", "FAIL2BAN", "BANGUARD"]);
    for i in items {
        t.row(vec![i.status.label().into(), cell(&i.place), cell(&i.fail2ban), cell(&i.banguard)]);
    }
    out.push_str(&t.render());
    if !plan.bans.is_empty() || !plan.skipped.is_empty() {
        out.push('\n');
        let mut t = Table::new(&["ADDRESS", "JAIL", "SERVICE", "EXPIRES IN", "RESULT"]);
        let (mut new, mut present, mut lifted, mut refused) = (0, 0, 0, 0);
        let mut shown = 0usize;
        for ((row, f), answer) in plan.bans.iter().zip(&outcome.answers) {
            let result = match answer {
                Imported::New(_) => {
                    new += 1;
                    if outcome.written || opts.bans_only && !opts.dry_run {
                        "imported".to_string()
                    } else {
                        "would be imported".to_string()
                    }
                }
                Imported::Present(b) => {
                    present += 1;
                    format!("already imported (ban #{})", b.id)
                }
                Imported::Lifted(b) => {
                    lifted += 1;
                    format!("lifted here since its import (ban #{}): stays lifted", b.id)
                }
                Imported::Over => "over".into(),
                Imported::Refused(why) => {
                    refused += 1;
                    format!("refused: {why}")
                }
            };
            shown += 1;
            if shown > ROWS_SHOWN {
                continue;
            }
            let expires = f.expires.map_or_else(|| "permanent".to_string(), |e| output::until(e, now));
            t.row(vec![
                cell(&row.ip),
                cell(&row.jail),
                output::service_label(&f.service).into(),
                expires,
                cell(&result),
            ]);
        }
        for (row, why) in &plan.skipped {
            shown += 1;
            if shown > ROWS_SHOWN {
                continue;
            }
            t.row(vec![
                cell(&row.ip),
                cell(&row.jail),
                "-".into(),
                "-".into(),
                cell(&format!("not carried over: {why}")),
            ]);
        }
        out.push_str(&t.render());
        if shown > ROWS_SHOWN {
            out.push_str(&format!("... and {} more rows (--json lists them all)\n", shown - ROWS_SHOWN));
        }
        let verb = if outcome.written || opts.bans_only && !opts.dry_run { "imported" } else { "to import" };
        out.push_str(&format!(
            "bans: {new} {verb}, {present} already imported, {lifted} lifted here (stay lifted), {refused} refused, {} not carried over\n",
            plan.skipped.len()
        ));
    }
    out.push_str("\nnext steps:\n");
    for (n, step) in next.iter().enumerate() {
        out.push_str(&format!("  {}. {step}\n", n + 1));
    }
    ctx.print(&out)?;
    Ok(Outcome::Ok)
}

/// Rows of the bans table the text report shows (`--json` has them all).
const ROWS_SHOWN: usize = 200;

/// A table cell from fail2ban's files: cleaned and at most 100 characters
/// (one long value must not pad every row).
fn cell(text: &str) -> String {
    let mut s: String = clean(text).chars().take(100).collect();
    if s.chars().count() < text.chars().count() {
        s.push('…');
    }
    s
}

/// The JSON report, written as it goes: a million rows of fail2ban's
/// database never become one document in memory.
fn print_json(
    ctx: &Ctx,
    plan: &Plan,
    opts: &Options,
    outcome: &fail2ban::Outcome,
    next: &[String],
    now: i64,
) -> Result<()> {
    use std::io::Write;
    let head = json!({
        "from": opts.from,
        "files": plan.files,
        "not_read": plan.notes.iter().map(|n| json!({ "file": n.file, "why": clean(&n.why) })).collect::<Vec<_>>(),
        "database": plan.database,
        "dropin": { "path": opts.output, "written": outcome.written, "text": plan.dropin },
        "changes": plan.changes,
        "settings": plan.mapping.settings,
        "items": plan.mapping.items,
        "jails": plan.mapping.jails,
        "next_steps": next,
    });
    let text = head.to_string();
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let write = |w: &mut std::io::BufWriter<std::io::StdoutLock<'_>>, s: &str| -> Result<()> {
        match w.write_all(s.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(|e| crate::error::Error::msg(format!("stdout: {e}"))),
        }
    };
    // The head's fields, then "bans" as an array written row by row.
    write(&mut w, &text[..text.len() - 1])?;
    write(&mut w, ",\"bans\":[")?;
    let mut first = true;
    for ((row, f), answer) in plan.bans.iter().zip(&outcome.answers) {
        let (result, ban) = match answer {
            Imported::New(b) => (
                if outcome.written || opts.bans_only && !opts.dry_run {
                    "imported"
                } else {
                    "would be imported"
                },
                Some(b),
            ),
            Imported::Present(b) => ("already imported", Some(b)),
            Imported::Lifted(b) => ("lifted here: stays lifted", Some(b)),
            Imported::Over => ("over", None),
            Imported::Refused(_) => ("refused", None),
        };
        let item = json!({
            "address": row.ip,
            "jail": row.jail,
            "service": output::service_label(&f.service),
            "expires": f.expires,
            "result": result,
            "why": match answer { Imported::Refused(why) => Some(why.as_str()), _ => None },
            "ban": ban.map(|b| output::ban_json(b, &plan.config, now)),
        });
        write(&mut w, if first { "" } else { "," })?;
        first = false;
        write(&mut w, &item.to_string())?;
    }
    for (row, why) in &plan.skipped {
        let item = json!({ "address": row.ip, "jail": row.jail, "result": "not carried over", "why": why });
        write(&mut w, if first { "" } else { "," })?;
        first = false;
        write(&mut w, &item.to_string())?;
    }
    write(&mut w, "]}\n")?;
    let _ = w.flush();
    let _ = ctx;
    Ok(())
}

/// What the admin does next: the PAM line, fail2ban's fate, a sync.
fn next_steps(plan: &Plan) -> Vec<String> {
    let mut steps = Vec::new();
    let services = &plan.mapping.services;
    let stacks = if services.is_empty() {
        "the PAM stacks of the services to protect".to_string()
    } else {
        services.iter().map(|s| format!("/etc/pam.d/{s}")).collect::<Vec<_>>().join(", ")
    };
    steps.push(format!(
        "add banguard's line first in {stacks}: `auth requisite pam_banguard.so` (on Debian: `pam-auth-update --enable banguard banguard-success`)"
    ));
    let log_based: Vec<&str> = plan
        .mapping
        .items
        .iter()
        .filter(|i| i.status == Status::NotCovered && i.banguard.starts_with("log-based"))
        .map(|i| i.fail2ban.trim_end_matches(" (enabled)"))
        .collect();
    if log_based.is_empty() {
        steps.push("stop fail2ban once the PAM line is in: `fail2ban-client stop` (and `systemctl disable fail2ban`)".into());
    } else {
        steps.push(format!(
            "keep fail2ban for its log-based jails ({}) and disable the jails banguard now covers (`enabled = false` in jail.local), then `fail2ban-client reload`",
            log_based.join(", ")
        ));
    }
    steps.push("`banguardctl sync` pushes the carried-over bans into the firewall now (the path unit or cron does within a minute)".into());
    steps
}
