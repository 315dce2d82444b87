//! Civil (proleptic Gregorian, UTC) dates from Unix day counts, for PromQL's date functions and
//! the tools' Go-style time printing, and RFC 3339 parsing for APIs that take timestamps (the
//! alert manager's silences). Pure integer arithmetic: no clock, no time zone database.

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`); exact for every `i64` day count whose year fits an `i64`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix ms as Go's `time.RFC3339Nano` prints a UTC time (`2023-11-14T22:13:20.5Z`: trailing
/// zeros of the fraction dropped, no fraction when whole).
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if ms != 0 {
        let fraction = format!("{ms:03}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Day count since 1970-01-01 of a (year, month 1..=12, day 1..=31) date (Howard Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Unix ms as go-openapi's `strfmt.DateTime` prints it (`RFC3339Millis`, the format of
/// Alertmanager API v2 timestamps): always three fraction digits, UTC (`2023-11-14T22:13:20.500Z`).
pub fn format_rfc3339_millis(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{ms:03}Z")
}

/// Parses an RFC 3339 timestamp (`2023-11-14T22:13:20Z`, `2023-11-14T23:13:20.123456+01:00`)
/// into Unix ms, as Go's `time.Parse(time.RFC3339, ...)` accepts it: `T` or `t`, `Z`, `z` or a
/// `±HH:MM` offset, an optional fraction of 1 to 9 digits (truncated to ms, i.e. floored).
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let invalid = |what: &str| format!("not an RFC 3339 timestamp ({what}): {text:?}");
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = bytes.get(range).ok_or_else(|| invalid("too short"))?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(invalid("expected digits"));
        }
        Ok(digits.iter().fold(0, |value, digit| value * 10 + i64::from(digit - b'0')))
    };
    let separator = |index: usize, allowed: &[u8]| -> Result<(), String> {
        match bytes.get(index) {
            Some(byte) if allowed.contains(byte) => Ok(()),
            _ => Err(invalid("bad separator")),
        }
    };
    let year = number(0..4)?;
    separator(4, b"-")?;
    let month = number(5..7)?;
    separator(7, b"-")?;
    let day = number(8..10)?;
    separator(10, b"Tt")?;
    let hour = number(11..13)?;
    separator(13, b":")?;
    let minute = number(14..16)?;
    separator(16, b":")?;
    let second = number(17..19)?;
    let mut index = 19;
    let mut fraction_ms = 0;
    if bytes.get(index) == Some(&b'.') {
        let digit_count = bytes[index + 1..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digit_count == 0 || digit_count > 9 {
            return Err(invalid("fraction needs 1 to 9 digits"));
        }
        let digits = &bytes[index + 1..index + 1 + digit_count.min(3)];
        fraction_ms = digits.iter().fold(0, |value, digit| value * 10 + i64::from(digit - b'0'))
            * 10_i64.pow(3 - digit_count.min(3) as u32);
        index += 1 + digit_count;
    }
    let offset_minutes = match bytes.get(index) {
        Some(b'Z' | b'z') if index + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if index + 6 == bytes.len() => {
            let offset_hours = number(index + 1..index + 3)?;
            separator(index + 3, b":")?;
            let offset_minutes = number(index + 4..index + 6)?;
            if offset_hours > 23 || offset_minutes > 59 {
                return Err(invalid("offset out of range"));
            }
            let total = offset_hours * 60 + offset_minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(invalid("expected Z or an offset such as +01:00 at the end")),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(invalid("month out of range")),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(invalid("field out of range"));
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + fraction_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_as_go_prints_it() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_ms(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(format_rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_millis_as_strfmt_prints_it() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(1_700_000_000_500), "2023-11-14T22:13:20.500Z");
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_rfc3339() {
        #[track_caller]
        fn check(text: &str, expected: Option<i64>) {
            assert_eq!(parse_rfc3339_ms(text).ok(), expected, "{text:?}");
        }
        check("1970-01-01T00:00:00Z", Some(0));
        check("2023-11-14T22:13:20.5Z", Some(1_700_000_000_500));
        check("2023-11-14T22:13:20.123456789Z", Some(1_700_000_000_123));
        check("2023-11-14t22:13:20.000z", Some(1_700_000_000_000));
        check("2023-11-14T23:13:20+01:00", Some(1_700_000_000_000));
        check("2023-11-14T20:43:20-01:30", Some(1_700_000_000_000));
        check("1969-12-31T23:59:59.999Z", Some(-1));
        check("2024-02-29T00:00:00Z", Some(1_709_164_800_000));
        check("2023-02-29T00:00:00Z", None);
        check("2023-11-14T22:13:20", None);
        check("2023-11-14 22:13:20Z", None);
        check("2023-11-14T24:00:00Z", None);
        check("2023-11-14T22:13:60Z", None);
        check("2023-11-14T22:13:20.Z", None);
        check("2023-11-14T22:13:20.1234567890Z", None);
        check("2023-11-14T22:13:20+0100", None);
        check("2023-11-14T22:13:20Zjunk", None);
        check("", None);
        for unix_ms in [0, 1, -1, 1_700_000_000_123, 253_402_300_799_999, -62_135_596_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_millis(unix_ms)), Ok(unix_ms));
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(unix_ms)), Ok(unix_ms));
        }
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in [-719_468, -1, 0, 59, 11_016, 20_788, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days, "day {days}");
        }
    }

    #[test]
    fn known_dates() {
        #[track_caller]
        fn check(days: i64, expected: (i64, i64, i64)) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
        }
        check(0, (1970, 1, 1));
        check(-1, (1969, 12, 31));
        check(59, (1970, 3, 1));
        check(11_016, (2000, 2, 29));
        check(20_788, (2026, 12, 1));
    }
}
