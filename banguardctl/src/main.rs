//! `banguardctl`: the operator's tool and the sync job of banguard.
//!
//! `main` only maps the outcome of [`run`] to an exit status: 0 ok, 1
//! nothing matched (see [`cli::EXIT_STATUS`]), 2 error, 3 the fleet was
//! out of reach, printed as one line
//! `banguardctl: {err}` on stderr. A closed stdout (`banguardctl list |
//! head -1`) is not an error.

#![deny(unsafe_code)]

mod cli;
mod cmd;
mod crowdsec;
mod ctx;
mod error;
mod fail2ban;
mod mail;
mod man;
mod mdman;
mod output;
mod syslog;
mod target;

use error::Error;
use std::process::ExitCode;

/// What a command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; something matched (or nothing needed to).
    Ok,
    /// The named target matched nothing, or `test` found the client refused.
    NoMatch,
    /// `sync` did its local work but the fleet could not be reached.
    FleetDown,
}

fn main() -> ExitCode {
    match run() {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NoMatch) => ExitCode::from(1),
        Ok(Outcome::FleetDown) => ExitCode::from(3),
        Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            say(&e.to_string());
            ExitCode::from(2)
        }
    }
}

/// One line on stderr, `banguardctl: {text}`. A closed stderr is ignored
/// (eprintln! would panic on it).
pub fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "banguardctl: {text}");
}

fn run() -> Result<Outcome, Error> {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    cmd::dispatch(cli)
}
