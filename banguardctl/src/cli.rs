//! The command line (clap derive). Every flag's documentation lives here
//! and is what `--help` shows.

use crate::Outcome;
use crate::error::Error;
use banguard::duration::BanTime;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// The exit status table, shown by `--help` and in doc/banguardctl.md.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  success; `list`, `status` and `check-config` also when there is
     nothing to show; `sync` also when another sync held the lock
  1  nothing matched: `unban` or `history` of a host with no ban, failure
     or record (`unban --all` with nothing to lift); `test` of a client
     that would be refused now; `doctor` found a failing check
  2  error: bad input (not an address, unknown flag), unreadable or
     invalid config (file:line: key: message), store or firewall failure,
     a write command run without root
  3  `sync` pushed bans and sent mail but could not exchange with the
     fleet ([fleet]): its exports wait and are retried

Environment:
  BANGUARD_NOW  unix seconds used as \"now\" by the commands that write
                nothing (list, status, test, history, check-config,
                sync --dry-run); for tests. Ignored, with a warning, by
                commands that write.";

#[derive(Debug, Parser)]
#[command(
    name = "banguardctl",
    version,
    about = "List, ban, unban, test and sync the hosts banguard refuses",
    long_about = "banguardctl shows and changes what banguard's PAM module refuses, and runs the sync job \
                  that pushes bans into the firewall and hosts.deny.",
    after_help = EXIT_STATUS,
    propagate_version = true
)]
pub struct Cli {
    /// Config file; its drop-ins are read from <dir>/<stem>.d/*.toml.
    /// Default: /etc/banguard/banguard.toml (built-in defaults if missing).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Active bans (or, with --failures, hosts counting failures).
    List(ListArgs),
    /// Lift the bans of a host or network (or all) and reset its failures.
    Unban(UnbanArgs),
    /// Ban an address or network by hand.
    Ban(BanArgs),
    /// Per-service figures, like `fail2ban-client status <jail>`.
    Status(StatusArgs),
    /// Would this client be let through now, and why? Writes nothing.
    Test(TestArgs),
    /// The recorded events of one host or network (or, with --user, of
    /// one account).
    History(HistoryArgs),
    /// The account side: accounts under attack and locked, their locks
    /// and familiar networks.
    ///
    /// An account is locked for unfamiliar sources only when passwords
    /// from places it never logged in from use up its budget ([accounts]
    /// in banguard.toml(5)); from its familiar networks (learned from its
    /// logins, or added here) it is never refused by that rule, and keys
    /// and local logins are never affected.
    Accounts(AccountsArgs),
    /// Read and check the whole config, print the effective settings.
    CheckConfig,
    /// Print the figures in the Prometheus text format (see METRICS).
    ///
    /// Counters are as the last sync run folded in what the PAM module
    /// counted (gauges as they are now) and survive syncs, restarts and
    /// reboots; with [metrics] enabled in banguard.toml(5), each sync run
    /// writes the same text for node_exporter's textfile collector. Reads
    /// only.
    Metrics,
    /// Push bans to the firewall/hosts.deny, expire, mail notices (cron job).
    Sync(SyncArgs),
    /// Bring another tool's set-up over: `import fail2ban`.
    Import(ImportArgs),
    /// Check that banguard is installed so that it protects something.
    ///
    /// One line per check, each ok, WARN, FAIL or - (does not apply): the
    /// config (valid, root's), the store's and runtime state's directories
    /// and files (owner, mode, free space), the PAM module where libpam
    /// looks, which PAM stacks reach banguard's line (sshd, vsftpd, login,
    /// su, sudo, dovecot, through includes such as common-auth or
    /// password-auth), the sync units or cron, the firewall back-ends, and
    /// SELinux (mode, banguard's policy module, the file contexts). Exit 1
    /// when a check fails. Reads only.
    Doctor(DoctorArgs),
    /// Print a man page in roff: banguardctl(8), generated from these
    /// definitions, or pam_banguard(8), from doc/pam_banguard.md.
    #[command(hide = true)]
    Man {
        #[arg(default_value = "banguardctl", value_parser = ["banguardctl", "pam_banguard"])]
        page: String,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check the installation below DIR (an image, a chroot) instead of
    /// this system; SELinux and enabled units are checked live only.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// Turn a fail2ban set-up into one banguard drop-in and carry over its
    /// bans in force.
    ///
    /// Reads fail2ban's configuration the way fail2ban does (jail.conf,
    /// jail.d/*.conf, jail.local, jail.d/*.local, [INCLUDES], [DEFAULT],
    /// %(name)s), maps every setting that has a meaning for banguard into one
    /// drop-in whose keys each name the fail2ban file, line and setting they
    /// came from, and carries the bans still in force from fail2ban's
    /// database (read-only) into the store, with origin "fail2ban". Jails
    /// that watch logs of daemons that do not authenticate through PAM are
    /// listed as not covered. Everything is read and checked before anything
    /// is written; bad input is one line naming the file and line, exit 2.
    #[command(name = "fail2ban")]
    Fail2ban(Fail2banArgs),
}

#[derive(Debug, Args)]
pub struct Fail2banArgs {
    /// fail2ban's configuration directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/fail2ban")]
    pub from: PathBuf,
    /// fail2ban's database. Default: fail2ban.conf's dbfile, else
    /// /var/lib/fail2ban/fail2ban.sqlite3 (no bans carried over if it
    /// does not exist).
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
    /// The drop-in to write. Default: 50-fail2ban.toml in the config's
    /// drop-in directory (/etc/banguard/banguard.d/).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the drop-in and the report; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing drop-in.
    #[arg(long)]
    pub force: bool,
    /// Write the drop-in only; carry no bans over (the database is not read).
    #[arg(long, conflicts_with = "bans_only")]
    pub config_only: bool,
    /// Carry the bans over only; write no drop-in (the configuration is
    /// still read, for which jails cover which services).
    #[arg(long)]
    pub bans_only: bool,
    /// Print what each fail2ban setting becomes (the reference table) and
    /// exit; reads nothing.
    #[arg(long, exclusive = true)]
    pub show_mapping: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this PAM service (bans on all services included).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Also expired and lifted bans still in the history.
    #[arg(long, conflicts_with = "failures")]
    pub all: bool,
    /// Hosts with failures counted but not banned (count/maxretry, window).
    #[arg(long)]
    pub failures: bool,
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// Address, network (CIDR) or host name label to unban.
    #[arg(value_name = "ADDR|CIDR|NAME", required_unless_present = "all")]
    pub target: Option<String>,
    /// Lift every active ban (on --service, or everywhere).
    #[arg(long, conflicts_with = "target")]
    pub all: bool,
    /// Only bans on this PAM service (an all-services ban is lifted only
    /// without --service).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Do not run a sync afterwards (the next scheduled sync catches up).
    #[arg(long)]
    pub no_sync: bool,
}

#[derive(Debug, Args)]
pub struct BanArgs {
    /// Address or network (CIDR) to ban.
    #[arg(value_name = "ADDR|CIDR")]
    pub target: String,
    /// Ban length ("90s", "10m", "1h", "2d", "1w"); default: the bantime of
    /// the service (or of [default]).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_length, conflicts_with = "permanent")]
    pub length: Option<i64>,
    /// Ban until unbanned.
    #[arg(long)]
    pub permanent: bool,
    /// Ban on this PAM service only (default: all services).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Why (kept in the store, shown by list and in the mail notice).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Do not run a sync afterwards (the next scheduled sync catches up).
    #[arg(long)]
    pub no_sync: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One PAM service (default: every configured or recorded one).
    #[arg(value_name = "SERVICE")]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Client address (or the name PAM_RHOST would carry).
    #[arg(value_name = "ADDR")]
    pub client: String,
    /// PAM service name (sshd, vsftpd, ...).
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The account the password would be for: the account side's answer
    /// too (familiar source, budget used, lock).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Address, network (CIDR) or host name label.
    #[arg(value_name = "ADDR|CIDR|NAME", required_unless_present = "user", conflicts_with = "user")]
    pub target: Option<String>,
    /// The events of one account instead: locks, unlocks, familiar
    /// networks learned and changed.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(subcommand)]
    pub action: Option<AccountsAction>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsAction {
    /// Accounts tried from unfamiliar sources (the default): budget used,
    /// sources, lock left; and when learning ends.
    List,
    /// Lift an account's locks and empty its budget (a fleet lock lifted
    /// here stays lifted against the fleet's decisions that end no later).
    Unlock {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// The familiar networks of one account (or of all).
    Familiar {
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// Make a network (or host name label) familiar for an account until
    /// removed: never refused by the account rule from there.
    FamiliarAdd {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "ADDR|CIDR|NAME")]
        target: String,
    },
    /// Remove a familiar network of an account (learned or added).
    FamiliarRemove {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "ADDR|CIDR|NAME")]
        target: String,
    },
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print what would be done; change nothing (firewall, files, store).
    #[arg(long)]
    pub dry_run: bool,
    /// Read each back-end's state back instead of trusting the record of
    /// the last sync.
    #[arg(long)]
    pub full: bool,
    /// Print nothing but errors (for cron; actions still go to syslog).
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_length(text: &str) -> Result<i64, String> {
    match BanTime::parse(text)? {
        BanTime::Seconds(n) => Ok(n),
        BanTime::Permanent => Err("use --permanent for a ban without end".into()),
    }
}

/// Parses the command line. `Err` carries what `run` returns instead:
/// `Ok` after --help/--version, one-line usage errors otherwise.
pub fn parse() -> Result<Cli, Result<Outcome, Error>> {
    let matches = Cli::command().try_get_matches();
    let parsed = matches.and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => Err(usage_outcome(e)),
    }
}

fn usage_outcome(e: clap::Error) -> Result<Outcome, Error> {
    use clap::error::ErrorKind::*;
    match e.kind() {
        DisplayHelp | DisplayVersion => {
            // Help and version go to stdout and succeed.
            e.print().map_err(Error::from)?;
            Ok(Outcome::Ok)
        }
        DisplayHelpOnMissingArgumentOrSubcommand | MissingSubcommand => Err(Error::msg(
            "a command is required: list, unban, ban, status, test, history, accounts, check-config, metrics or sync (try --help)",
        )),
        _ => Err(Error::msg(one_line(&e.render().to_string()))),
    }
}

/// clap's error, reduced to its first line without the "error: " prefix.
fn one_line(rendered: &str) -> String {
    let first = rendered.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (try --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_from(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("banguardctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let c = parse_from(&["list", "--json", "--config", "/x.toml"]).unwrap();
        assert!(c.json);
        assert_eq!(c.config.as_deref(), Some(std::path::Path::new("/x.toml")));
    }

    #[test]
    fn unban_needs_a_target_or_all_but_not_both() {
        assert!(parse_from(&["unban"]).is_err());
        assert!(parse_from(&["unban", "1.2.3.4", "--all"]).is_err());
        assert!(parse_from(&["unban", "--all"]).is_ok());
    }

    #[test]
    fn ban_length_forms() {
        let c = parse_from(&["ban", "192.0.2.1", "--for", "1h30m"]).unwrap();
        let Command::Ban(b) = c.command else { panic!() };
        assert_eq!(b.length, Some(5400));
        assert!(parse_from(&["ban", "192.0.2.1", "--for", "0"]).is_err());
        assert!(parse_from(&["ban", "192.0.2.1", "--for", "permanent"]).is_err());
        assert!(parse_from(&["ban", "192.0.2.1", "--for", "1h", "--permanent"]).is_err());
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = parse_from(&["list", "--bogus"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("unexpected argument '--bogus'"), "{line}");
        assert!(line.ends_with("(try --help)"));
    }
}
