//! Value checks, run while a file is parsed so that an error names the
//! key and its line.

use crate::duration::{BanTime, parse_duration};
use crate::sync::BackendKind;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

fn custom<E: serde::de::Error>(msg: String) -> E {
    E::custom(msg)
}

pub(super) fn de_maxretry<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=1_000_000).contains(&n) {
        return Err(custom(format!("must be a whole number from 1 to 1000000, not {n}")));
    }
    Ok(Some(n as u32))
}

/// A duration: a string ("10m") or a number of seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(i64),
    Text(String),
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    let secs = match DurationText::deserialize(d).map_err(|_| {
        custom::<D::Error>("expected a duration such as \"90s\", \"10m\", \"1h\", \"2d\" or \"1w\"".into())
    })? {
        DurationText::Seconds(n) => parse_duration(&n.to_string()),
        DurationText::Text(t) => parse_duration(&t),
    }
    .map_err(custom::<D::Error>)?;
    if secs == 0 {
        return Err(custom("must be longer than 0 seconds".into()));
    }
    Ok(Some(secs))
}

/// Longest refusal delay: a refused attempt holds an application's
/// connection slot for this long.
pub const MAX_REFUSAL_DELAY: i64 = 30;

pub(super) fn de_refusal_delay<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    let secs = match DurationText::deserialize(d)
        .map_err(|_| custom::<D::Error>("expected a duration such as \"2s\", or 0 for none".into()))?
    {
        DurationText::Seconds(n) => parse_duration(&n.to_string()),
        DurationText::Text(t) => parse_duration(&t),
    }
    .map_err(custom::<D::Error>)?;
    if secs > MAX_REFUSAL_DELAY {
        return Err(custom(format!("must be from 0 to {MAX_REFUSAL_DELAY} seconds, not {secs}")));
    }
    Ok(Some(secs))
}

pub(super) fn de_bantime<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<BanTime>, D::Error> {
    let t = match DurationText::deserialize(d)
        .map_err(|_| custom::<D::Error>("expected a duration such as \"10m\", or \"permanent\"".into()))?
    {
        DurationText::Seconds(n) => n.to_string(),
        DurationText::Text(t) => t,
    };
    BanTime::parse(&t).map(Some).map_err(custom)
}

pub(super) fn de_factor<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    let f = f64::deserialize(d)?;
    if !(1.0..=100.0).contains(&f) {
        return Err(custom(format!("must be from 1.0 (no increase) to 100.0, not {f}")));
    }
    Ok(Some(f))
}

pub(super) fn de_cidrs<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<IpNet>>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| crate::addr::parse_net(s).map_err(custom::<D::Error>))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Some)
}

pub(super) fn de_prefix4<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u8>, D::Error> {
    de_prefix(d, 8, 32)
}

pub(super) fn de_prefix6<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u8>, D::Error> {
    de_prefix(d, 16, 128)
}

pub(super) fn de_escalate_after<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    if !(0..=1_000_000).contains(&n) {
        return Err(custom(format!("must be a whole number from 0 (never) to 1000000, not {n}")));
    }
    Ok(Some(n as u32))
}

pub(super) fn de_widest4<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u8>, D::Error> {
    de_prefix(d, 1, 32)
}

pub(super) fn de_widest6<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u8>, D::Error> {
    de_prefix(d, 1, 128)
}

pub(super) fn de_prefix<'de, D: Deserializer<'de>>(
    d: D,
    min: i64,
    max: i64,
) -> std::result::Result<Option<u8>, D::Error> {
    let n = i64::deserialize(d)?;
    if !(min..=max).contains(&n) {
        return Err(custom(format!("must be a prefix length from {min} to {max}, not {n}")));
    }
    Ok(Some(n as u8))
}

pub(super) fn de_backends<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<BackendKind>>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.name()).collect();
    items
        .iter()
        .map(|b| b.parse().map_err(|_| custom(format!("unknown back-end {b:?}; expected some of {names:?}"))))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Some)
}

/// A mail address or local user: no spaces, no shell or header tricks.
pub(super) fn de_mailbox<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "@._+-".contains(c));
    if !ok {
        return Err(custom(format!("{s:?} is not a plain mail address or user name")));
    }
    Ok(Some(s))
}

pub(super) fn de_url<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(custom(format!("{s:?} is not an http:// or https:// URL")));
    }
    Ok(Some(s))
}

pub(super) fn de_busy<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    if !(10..=10_000).contains(&n) {
        return Err(custom(format!("must be from 10 to 10000 milliseconds, not {n}")));
    }
    Ok(Some(n as u32))
}

/// A path banguard opens or runs as root: absolute, so that it never
/// depends on the working directory of whatever process loads the module
/// (under `su`, a user's own directory).
pub(super) fn de_abs_path<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<PathBuf>, D::Error> {
    let p = PathBuf::from(String::deserialize(d)?);
    if !p.is_absolute() {
        return Err(custom(format!(
            "{:?} is not an absolute path (one starting with /)",
            p.display().to_string()
        )));
    }
    Ok(Some(p))
}

/// An absolute path ending in `.prom` (node_exporter's textfile collector
/// reads only those).
pub(super) fn de_prom_path<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    let p = de_abs_path(d)?.expect("de_abs_path gives a path");
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.ends_with(".prom") || name.len() <= ".prom".len() {
        return Err(custom(format!(
            "{:?} does not end in .prom: node_exporter's textfile collector would not read it",
            p.display().to_string()
        )));
    }
    Ok(Some(p))
}

/// An absolute path, or "" for none.
pub(super) fn de_abs_path_or_none<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    let p = PathBuf::from(String::deserialize(d)?);
    if !p.as_os_str().is_empty() && !p.is_absolute() {
        return Err(custom(format!(
            "{:?} is not an absolute path (one starting with /), nor \"\" for none",
            p.display().to_string()
        )));
    }
    Ok(Some(p))
}

/// A duration, or 0 for none.
pub(super) fn de_duration_or_zero<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    let secs = match DurationText::deserialize(d)
        .map_err(|_| custom::<D::Error>("expected a duration such as \"7d\", or 0 for none".into()))?
    {
        DurationText::Seconds(n) => parse_duration(&n.to_string()),
        DurationText::Text(t) => parse_duration(&t),
    }
    .map_err(custom::<D::Error>)?;
    Ok(Some(secs))
}

fn de_bounded<'de, D: Deserializer<'de>>(d: D, min: i64, max: i64) -> std::result::Result<i64, D::Error> {
    let n = i64::deserialize(d)?;
    if !(min..=max).contains(&n) {
        return Err(custom(format!("must be a whole number from {min} to {max}, not {n}")));
    }
    Ok(n)
}

pub(super) fn de_budget<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    de_bounded(d, 1, 1000).map(|n| Some(n as u32))
}

pub(super) fn de_familiar_max<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    de_bounded(d, 1, 1000).map(|n| Some(n as u32))
}

pub(super) fn de_max_tracked<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    de_bounded(d, 100, 10_000_000).map(|n| Some(n as u64))
}
