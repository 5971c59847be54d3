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
    };
    if !opts.dry_run {
        require_root("import fail2ban")?;
    }
    fail2ban::check_output(&opts)?;
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
        let bans: Vec<_> = plan
            .bans
            .iter()
            .zip(&outcome.answers)
            .map(|((row, f), answer)| {
                let (result, ban) = match answer {
                    Imported::New(b) => (if outcome.written { "imported" } else { "would be imported" }, Some(b)),
                    Imported::Present(b) => ("already imported", Some(b)),
                    Imported::Over => ("over", None),
                    Imported::Refused(_) => ("refused", None),
                };
                json!({
                    "address": row.ip,
                    "jail": row.jail,
                    "service": output::service_label(&f.service),
                    "expires": f.expires,
                    "result": result,
                    "why": match answer { Imported::Refused(why) => Some(why.as_str()), _ => None },
                    "ban": ban.map(|b| output::ban_json(b, &plan.config, now)),
                })
            })
            .chain(plan.skipped.iter().map(|(row, why)| {
                json!({ "address": row.ip, "jail": row.jail, "result": "not carried over", "why": why })
            }))
            .collect();
        ctx.print_json(&json!({
            "from": opts.from,
            "files": plan.files,
            "database": plan.database,
            "dropin": { "path": opts.output, "written": outcome.written, "text": plan.dropin },
            "settings": plan.mapping.settings,
            "items": plan.mapping.items,
            "jails": plan.mapping.jails,
            "bans": bans,
            "next_steps": next,
        }))?;
        return Ok(Outcome::Ok);
    }
    let mut out = String::new();
    if opts.dry_run {
        out.push_str(&format!("# {} (dry run: not written)\n", opts.output.display()));
        out.push_str(&plan.dropin);
        out.push('\n');
    }
    out.push_str(&format!("fail2ban: {} ({} files read)\n", opts.from.display(), plan.files.len()));
    match &plan.database {
        DatabaseUse::Read { path, schema } => {
            out.push_str(&format!("database: {} (schema {schema}, read-only)\n", path.display()))
        }
        DatabaseUse::None { reason } => out.push_str(&format!("database: {reason}\n")),
    }
    let state = if outcome.written { "written" } else { "not written (dry run)" };
    out.push_str(&format!("drop-in:  {}: {state}\n\n", opts.output.display()));
    let mut items: Vec<_> = plan.mapping.items.iter().collect();
    items.sort_by_key(|i| i.status);
    let mut t = Table::new(&["STATUS", "WHERE", "FAIL2BAN", "BANGUARD"]);
    for i in items {
        t.row(vec![i.status.label().into(), clean(&i.place), clean(&i.fail2ban), clean(&i.banguard)]);
    }
    out.push_str(&t.render());
    if !plan.bans.is_empty() || !plan.skipped.is_empty() {
        out.push('\n');
        let mut t = Table::new(&["ADDRESS", "JAIL", "SERVICE", "EXPIRES IN", "RESULT"]);
        let (mut new, mut present, mut refused) = (0, 0, 0);
        for ((row, f), answer) in plan.bans.iter().zip(&outcome.answers) {
            let result = match answer {
                Imported::New(_) => {
                    new += 1;
                    if outcome.written { "imported".to_string() } else { "would be imported".to_string() }
                }
                Imported::Present(b) => {
                    present += 1;
                    format!("already imported (ban #{})", b.id)
                }
                Imported::Over => "over".into(),
                Imported::Refused(why) => {
                    refused += 1;
                    format!("refused: {why}")
                }
            };
            let expires = f.expires.map_or_else(|| "permanent".to_string(), |e| output::until(e, now));
            t.row(vec![
                clean(&row.ip),
                clean(&row.jail),
                output::service_label(&f.service).into(),
                expires,
                result,
            ]);
        }
        for (row, why) in &plan.skipped {
            t.row(vec![
                clean(&row.ip),
                clean(&row.jail),
                "-".into(),
                "-".into(),
                format!("not carried over: {why}"),
            ]);
        }
        out.push_str(&t.render());
        let verb = if outcome.written { "imported" } else { "to import" };
        out.push_str(&format!(
            "bans: {new} {verb}, {present} already imported, {refused} refused, {} not carried over\n",
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
