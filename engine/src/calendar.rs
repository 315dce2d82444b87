//! Civil (proleptic Gregorian, UTC) dates from Unix day counts, for PromQL's date functions and
//! the tools' Go-style time printing. Pure integer arithmetic: no clock, no time zone.

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
