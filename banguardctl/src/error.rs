//! The CLI's error: always printed as one line, `banguardctl: {err}`.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// From the banguard core (config, store, firewall back-ends).
    Core(banguard::Error),
    /// Bad input or a refused operation, already worded for the operator.
    Msg(String),
    /// stdout was closed by the reader (`| head`): exit quietly with 0.
    BrokenPipe,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever a message carries (a command's stderr can have
        // several).
        let text = match self {
            Error::Core(e) => match e.platform_advice() {
                Some(advice) => format!("{e}; {advice}"),
                None => e.to_string(),
            },
            Error::Msg(m) => m.clone(),
            Error::BrokenPipe => "stdout closed".to_string(),
        };
        let mut parts = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if let Some(first) = parts.next() {
            f.write_str(first)?;
        }
        for more in parts {
            write!(f, "; {more}")?;
        }
        Ok(())
    }
}

impl From<banguard::Error> for Error {
    fn from(e: banguard::Error) -> Error {
        Error::Core(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::BrokenPipe { Error::BrokenPipe } else { Error::Msg(e.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_one_line() {
        let e = Error::msg("first\n  second \n\nthird");
        assert_eq!(e.to_string(), "first; second; third");
    }
}
