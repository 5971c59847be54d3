//! Durations as admins write them in jail.conf: "90s", "10m", "1h", "2d",
//! "1w", combinations such as "1h30m", or a bare number of seconds.

use std::fmt;

const UNITS: [(char, i64); 5] = [('w', 604_800), ('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Longest duration accepted anywhere: 100 years. Keeps arithmetic on unix
/// seconds far away from overflow.
pub const MAX_SECONDS: i64 = 100 * 365 * 86_400;

/// Parses a duration into seconds. Accepts `N`, `Ns`, `Nm`, `Nh`, `Nd`, `Nw`
/// and concatenations (`1h30m`). Zero is allowed; negatives are not.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"90s\", \"10m\", \"1h\", \"2d\" or \"1w\"".into());
    }
    if let Ok(n) = s.parse::<i64>() {
        return check_range(n, text);
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut seen_unit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == c.to_ascii_lowercase()) else {
            return Err(format!(
                "{text:?} is not a duration: unknown unit {c:?} (use s, m, h, d or w, e.g. \"10m\")"
            ));
        };
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: a number must come before {c:?}"))?;
        digits.clear();
        seen_unit = true;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() || !seen_unit {
        return Err(format!("{text:?} is not a duration: a number without a unit must stand alone"));
    }
    check_range(total, text)
}

fn check_range(n: i64, text: &str) -> Result<i64, String> {
    if n < 0 {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    if n > MAX_SECONDS {
        return Err(format!("{text:?} is longer than 100 years; use \"permanent\" instead"));
    }
    Ok(n)
}

/// Formats seconds the way people read them: "7m12s", "1h", "2d3h", "0s".
pub fn format_duration(seconds: i64) -> String {
    if seconds <= 0 {
        return "0s".into();
    }
    let mut rest = seconds;
    let mut out = String::new();
    for (unit, mult) in UNITS {
        // Weeks read badly in mixed forms ("1w2d"); show days instead
        // unless the value is a whole number of weeks.
        if unit == 'w' && rest % mult != 0 {
            continue;
        }
        if rest >= mult {
            out.push_str(&format!("{}{unit}", rest / mult));
            rest %= mult;
        }
    }
    out
}

/// A ban length: a number of seconds or permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTime {
    Seconds(i64),
    Permanent,
}

impl BanTime {
    /// Parses "10m", "permanent", "-1" (fail2ban's spelling of forever).
    pub fn parse(text: &str) -> Result<BanTime, String> {
        match text.trim() {
            "permanent" | "forever" | "never" | "-1" => Ok(BanTime::Permanent),
            other => match parse_duration(other)? {
                0 => Err(format!("{text:?}: a ban of 0 seconds would never refuse anything")),
                n => Ok(BanTime::Seconds(n)),
            },
        }
    }

    /// The expiry time for a ban starting at `start`, or `None` if permanent.
    pub fn expiry_from(self, start: i64) -> Option<i64> {
        match self {
            BanTime::Seconds(n) => Some(start.saturating_add(n)),
            BanTime::Permanent => None,
        }
    }
}

impl fmt::Display for BanTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::Seconds(n) => f.write_str(&format_duration(*n)),
            BanTime::Permanent => f.write_str("permanent"),
        }
    }
}

/// The civil date (year, month 1-12, day 1-31) of a day counted from
/// 1970-01-01, proleptic Gregorian (Howard Hinnant's `civil_from_days`).
/// For printing times without a date crate.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(super::civil_from_days(20_784), (2026, 11, 27));
    }

    use super::*;

    #[test]
    fn parses_jail_conf_spellings() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("600"), Ok(600));
        assert_eq!(parse_duration(" 5M "), Ok(300));
        assert_eq!(parse_duration("0"), Ok(0));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in ["", "m", "10x", "1.5h", "-5", "h10", "10m5", "99999999999999999999w"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-5").unwrap_err().contains("negative"));
        assert!(parse_duration("101y").is_err());
        assert!(parse_duration("5300w").unwrap_err().contains("100 years"));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_duration(432), "7m12s");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(604_800), "1w");
        assert_eq!(format_duration(694_800), "8d1h");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(-3), "0s");
        for n in [1, 59, 61, 3599, 86_399, 90_061, 1_209_600] {
            assert_eq!(parse_duration(&format_duration(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn bantime_forms() {
        assert_eq!(BanTime::parse("permanent"), Ok(BanTime::Permanent));
        assert_eq!(BanTime::parse("-1"), Ok(BanTime::Permanent));
        assert_eq!(BanTime::parse("10m"), Ok(BanTime::Seconds(600)));
        assert!(BanTime::parse("0").is_err());
        assert_eq!(BanTime::Seconds(600).expiry_from(1000), Some(1600));
        assert_eq!(BanTime::Permanent.expiry_from(1000), None);
        assert_eq!(BanTime::Seconds(600).to_string(), "10m");
    }
}
