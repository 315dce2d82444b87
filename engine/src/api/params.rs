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
    // Go's time.Parse: invalid dates such as 2015-02-31 are refused.
    crate::calendar::parse_rfc3339_ms(text).map_err(|_| invalid())
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
        check_time("2015-02-31T00:00:00Z", Err(()));
        check_time("2015-02-29T00:00:00Z", Err(()));
        check_time("2016-02-29T00:00:00Z", Ok(1_456_704_000_000));
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
