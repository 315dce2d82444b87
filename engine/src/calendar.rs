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

#[cfg(test)]
mod tests {
    use super::*;

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
