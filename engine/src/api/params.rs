//! Request parameter parsing with Prometheus' rules (web/api/v1/api.go `parseTime`,
//! `parseDuration`): times are Unix seconds as a float or RFC 3339; durations are float seconds
//! or a Prometheus duration such as `1m30s`.

use crate::config::parse_duration_ms;

/// Parses a `time`/`start`/`end` parameter into Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {text:?} to a valid timestamp");
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds.abs() > (i64::MAX / 1000) as f64 {
            return Err(invalid());
        }
        // Rounded to milliseconds as Prometheus does (math.Round(ns*1000)/1000).
        return Ok((seconds * 1000.0).round() as i64);
    }
    parse_rfc3339_ms(text).ok_or_else(invalid)
}

/// Parses a `step`/`timeout` parameter into milliseconds.
pub fn parse_duration_param_ms(text: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {text:?} to a valid duration");
    if let Ok(seconds) = text.parse::<f64>() {
        let milliseconds = seconds * 1000.0;
        if !milliseconds.is_finite() || milliseconds.abs() >= i64::MAX as f64 {
            return Err(invalid());
        }
        return Ok(milliseconds.round() as i64);
    }
    parse_duration_ms(text).map_err(|_| invalid())
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix milliseconds; `None` when malformed.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let separators_ok = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't'))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut index = 19;
    let mut fraction_ms = 0;
    if bytes.get(index) == Some(&b'.') {
        let start = index + 1;
        index = start;
        while bytes.get(index).is_some_and(u8::is_ascii_digit) {
            index += 1;
        }
        if index == start {
            return None;
        }
        // Keep millisecond precision; truncate finer digits as time.Time -> ms does.
        let digits = &text[start..index.min(start + 3)];
        fraction_ms = digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32);
    }
    let offset_minutes = match bytes.get(index)? {
        b'Z' | b'z' if index + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if index + 6 == bytes.len() && bytes[index + 3] == b':' => {
            let minutes = number(index + 1..index + 3)? * 60 + number(index + 4..index + 6)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + fraction_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_time(text: &str, expected: Result<i64, ()>) {
        assert_eq!(parse_time_ms(text).map_err(|_| ()), expected, "input {text:?}");
    }

    #[test]
    fn times() {
        check_time("0", Ok(0));
        check_time("1435781451.781", Ok(1_435_781_451_781));
        check_time("1435781451.7814", Ok(1_435_781_451_781));
        check_time("-1.5", Ok(-1500));
        check_time("2015-07-01T20:10:51.781Z", Ok(1_435_781_451_781));
        check_time("2015-07-01T20:10:51Z", Ok(1_435_781_451_000));
        check_time("2015-07-01T22:10:51.7+02:00", Ok(1_435_781_451_700));
        check_time("1970-01-01T00:00:00Z", Ok(0));
        check_time("2000-02-29T00:00:00Z", Ok(951_782_400_000));
        check_time("abc", Err(()));
        check_time("2015-13-01T00:00:00Z", Err(()));
        check_time("2015-07-01T20:10:51", Err(()));
        check_time("NaN", Err(()));
        check_time("", Err(()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_param_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_param_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_param_ms("1m30s"), Ok(90_000));
        assert!(parse_duration_param_ms("x").unwrap_err().contains("valid duration"));
    }
}
