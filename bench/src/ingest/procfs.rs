//! Readers for the two `/proc/<pid>` files the comparison needs: `stat` (CPU time in clock ticks)
//! and `status` (resident memory). Only the text is parsed here; the caller reads the files.
//!
//! Invariants: a field that is missing or not a number is an error naming the field, never a
//! panic; the command name in `stat` may hold blanks and parentheses, so fields are counted
//! after its last `)`, as proc(5) advises. Stateless.

/// Why a `/proc` file did not yield its field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProcError {
    /// The field is absent or unparsable.
    #[error("/proc/<pid>/{file}: field {field} missing or not a number")]
    Field {
        /// `stat` or `status`.
        file: &'static str,
        /// The field's name.
        field: &'static str,
    },
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks (fields 14 and 15 of proc(5)).
pub fn cpu_ticks(stat: &str) -> Result<u64, ProcError> {
    let after_command =
        stat.rfind(')').map(|index| &stat[index + 1..]).ok_or(ProcError::Field { file: "stat", field: "comm" })?;
    // After the command come fields 3 (state), 4, ...: utime is field 14, stime field 15.
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let field = |index: usize, field: &'static str| {
        fields.get(index).and_then(|text| text.parse::<u64>().ok()).ok_or(ProcError::Field { file: "stat", field })
    };
    Ok(field(14 - 3, "utime")? + field(15 - 3, "stime")?)
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn rss_bytes(status: &str) -> Result<u64, ProcError> {
    let missing = ProcError::Field { file: "status", field: "VmRSS" };
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).ok_or(missing.clone())?;
    let kibibytes =
        line.trim().strip_suffix("kB").ok_or(missing.clone())?.trim().parse::<u64>().map_err(|_| missing)?;
    Ok(kibibytes * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_ticks(stat: &str, expected: Result<u64, ProcError>) {
        assert_eq!(cpu_ticks(stat), expected);
    }

    #[track_caller]
    fn check_rss(status: &str, expected: Result<u64, ProcError>) {
        assert_eq!(rss_bytes(status), expected);
    }

    #[test]
    fn stat_cpu_ticks() {
        let tail = "S 1 2 3 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 1234 567890 321";
        check_ticks(&format!("4242 (prometheus) {tail}"), Ok(290));
        // A command name with blanks and parentheses does not shift the fields.
        check_ticks(&format!("7 (a) b (c)) {tail}"), Ok(290));
        check_ticks("7 (x) S 1 2", Err(ProcError::Field { file: "stat", field: "utime" }));
        check_ticks("garbage", Err(ProcError::Field { file: "stat", field: "comm" }));
        check_ticks("7 (x) S 1 2 3 0 -1 0 0 0 0 0 12 zz", Err(ProcError::Field { file: "stat", field: "stime" }));
    }

    #[test]
    fn status_rss() {
        check_rss("Name:\tserver\nVmPeak:\t  99 kB\nVmRSS:\t  123456 kB\nThreads: 3\n", Ok(123_456 * 1024));
        check_rss("Name:\tzombie\n", Err(ProcError::Field { file: "status", field: "VmRSS" }));
        check_rss("VmRSS:\t12 MB\n", Err(ProcError::Field { file: "status", field: "VmRSS" }));
    }
}
