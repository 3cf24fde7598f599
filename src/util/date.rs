//! UTC calendar dates to and from nanoseconds since the epoch, for what
//! moat prints (`2024-05-01 12:30:05`) and what users type (`--since
//! 2024-05-01`). Proleptic Gregorian, no time zones: moat shows UTC.
//!
//! Invariants: `parse_utc` accepts only real dates (month 1–12, the days
//! of that month, hours < 24, minutes and seconds < 60) and never
//! overflows; `civil` is its inverse for every time a snapshot can hold.

/// Days from 1970-01-01 to `y-m-d` (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day, hour, minute, second)` of `ns` since the epoch.
pub fn civil(ns: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DD HH:MM:SS`.
pub fn format_utc(ns: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ns);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339), e.g. for names.
pub fn format_rfc3339(ns: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ns);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `s` is meant as a calendar date (it starts `YYYY-`).
pub fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Parses `YYYY-MM-DD`, optionally followed by ` ` or `T`, `HH:MM` or
/// `HH:MM:SS`, and an optional `Z`: a UTC time, in ns since the epoch.
pub fn parse_utc(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a date like 2024-05-01 or 2024-05-01T12:30:00Z");
    let t = s.trim().strip_suffix('Z').unwrap_or(s.trim());
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (t, None),
    };
    let num = |p: &str, digits: usize| -> Result<i64, String> {
        if p.len() != digits || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(format!("'{s}': there is no day {y:04}-{m:02}-{d:02}"));
    }
    let (hh, mm, ss) = match time {
        None => (0, 0, 0),
        Some(t) => match t.split(':').collect::<Vec<_>>().as_slice() {
            [h, m] => (num(h, 2)?, num(m, 2)?, 0),
            [h, m, s] => (num(h, 2)?, num(m, 2)?, num(s, 2)?),
            _ => return Err(bad()),
        },
    };
    if hh > 23 || mm > 59 || ss > 59 {
        return Err(format!("'{s}': there is no time {hh:02}:{mm:02}:{ss:02}"));
    }
    // Four-digit years: the seconds fit an i64 many times over; the
    // nanoseconds fit for years 1678..2262, what a snapshot can hold.
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    secs.checked_mul(1_000_000_000)
        .ok_or_else(|| format!("'{s}' is outside the years 1678 to 2261"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_rfc3339(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_utc("2023-11-14 22:13:20"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_utc("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_utc("2024-01-01"), Ok(1_704_067_200_000_000_000));
        assert_eq!(
            parse_utc("2024-02-29 00:01"),
            Ok(1_704_067_200_000_000_000 + (59 * 86_400 + 60) * 1_000_000_000)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "2024-01-01 24:00",
            "2024-01-01T",
            "x",
            "9999-12-31",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
        assert!(looks_like_date("2024-01") && !looks_like_date("20d") && !looks_like_date("-5d"));
    }

    proptest! {
        #[test]
        fn parse_inverts_format(s in -9_000_000_000i64..9_000_000_000i64) {
            let ns = s * 1_000_000_000;
            prop_assert_eq!(parse_utc(&format_rfc3339(ns)), Ok(ns));
            prop_assert_eq!(parse_utc(&format_utc(ns)), Ok(ns));
        }
    }
}
