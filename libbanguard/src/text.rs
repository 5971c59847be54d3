//! How things read for people: local times, and text made safe to print.

use crate::duration::civil_from_days;
use crate::sys::{LocalTime, local_time};

/// Control characters become '?', so that a name or reason can never
/// move a terminal's cursor or forge a second line.
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `t` in local time; UTC when libc cannot say.
fn local(t: i64) -> LocalTime {
    local_time(t).unwrap_or_else(|| utc(t))
}

/// `t` in UTC, without libc.
fn utc(t: i64) -> LocalTime {
    let secs = t.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    LocalTime {
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        min: (secs % 3600 / 60) as u32,
        sec: (secs % 60) as u32,
        offset: 0,
    }
}

/// "2027-01-15 08:00:00" in local time, for tables and log lines.
pub fn time(t: i64) -> String {
    let l = local(t);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", l.year, l.month, l.day, l.hour, l.min, l.sec)
}

/// "2027-01-15T08:00:00+00:00" in local time, for JSON and mail.
pub fn time_iso(t: i64) -> String {
    let l = local(t);
    let sign = if l.offset < 0 { '-' } else { '+' };
    let off = l.offset.abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        l.year,
        l.month,
        l.day,
        l.hour,
        l.min,
        l.sec,
        off / 3600,
        off % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        let l = utc(1_800_000_000);
        assert_eq!((l.year, l.month, l.day, l.hour, l.min, l.sec), (2027, 1, 15, 8, 0, 0));
        let l = utc(951_782_400); // 2000-02-29
        assert_eq!((l.year, l.month, l.day), (2000, 2, 29));
        let l = utc(0);
        assert_eq!((l.year, l.month, l.day, l.hour), (1970, 1, 1, 0));
    }

    #[test]
    fn clean_replaces_controls() {
        assert_eq!(clean("a\nb\x1b[31m"), "a?b?[31m");
    }
}
