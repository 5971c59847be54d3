//! One file per command.

pub(crate) mod accounts;
mod ban;
mod check_config;
mod doctor;
mod history;
mod import;
mod list;
pub(crate) mod metrics;
mod status;
pub mod sync;
mod test;
mod unban;

use crate::Outcome;
use crate::cli::{Cli, Command};
use crate::ctx::Ctx;
use crate::error::Result;

pub fn dispatch(cli: Cli) -> Result<Outcome> {
    if let Command::Man { page } = &cli.command {
        // Needs no config: run at build time, by anyone.
        let mut out = std::io::stdout().lock();
        let written = match page.as_str() {
            "pam_banguard" => crate::man::render_pam_page(&mut out),
            _ => crate::man::render(&mut out),
        };
        written.map_err(crate::error::Error::from)?;
        return Ok(Outcome::Ok);
    }
    if let Command::Doctor(a) = &cli.command {
        // Runs whatever state the config is in: it reports on it.
        return doctor::run(cli.config.clone(), cli.json, a);
    }
    let ctx = Ctx::load(cli.config, cli.json)?;
    match cli.command {
        Command::List(a) => list::run(&ctx, &a),
        Command::Unban(a) => unban::run(&ctx, &a),
        Command::Ban(a) => ban::run(&ctx, &a),
        Command::Status(a) => status::run(&ctx, &a),
        Command::Test(a) => test::run(&ctx, &a),
        Command::History(a) => history::run(&ctx, &a),
        Command::Accounts(a) => accounts::run(&ctx, &a),
        Command::CheckConfig => check_config::run(&ctx),
        Command::Metrics => metrics::run(&ctx),
        Command::Sync(a) => sync::run(&ctx, &a),
        Command::Import(a) => import::run(&ctx, &a),
        Command::Man { .. } | Command::Doctor(_) => unreachable!("handled above"),
    }
}
