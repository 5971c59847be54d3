//! How things read for people: local times, and text made safe to print.

use crate::duration::civil_from_days;
use crate::sys::{LocalTime, local_time};

/// Control characters and invisible format characters become '?', so
/// that a name or reason can never move a terminal's cursor, forge a
/// second line, or read differently from what it is (a right-to-left
/// override, a zero-width space).
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if is_unsafe(c) { '?' } else { c }).collect()
}

/// Whether `c` must not reach a terminal or a log line as it is: a
/// control character, a line or paragraph separator, or one of Unicode's
/// format characters (general category Cf: bidirectional controls,
/// zero-width characters, the byte-order mark, tags...).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
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
        assert_eq!(clean("evil\u{202E}txt.exe\u{200B}\u{FEFF}\u{2028}\u{2029}é"), "evil?txt.exe????é");
    }
}
