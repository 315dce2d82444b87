//! `enginectl test rules` answers as `promtool test rules` (Prometheus 2.42) does: for every test
//! file in `tests/data/unittest/` the stdout, stderr and exit code must equal, byte for byte,
//! promtool's recorded in `NAME.promtool.{stdout,stderr,code}` (how to regenerate them: the
//! directory's README). When promtool is installed it is also run live, and must still give the
//! recorded answers; under `ENGINE_PEER_TESTS=1` a missing promtool fails that test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes and files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run printed and its exit code.
#[derive(Debug, PartialEq, Eq)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unittest")
}

/// `program test rules FILES...` run in the data directory, so printed paths are as recorded.
fn run(program: &Path, files: &[&str]) -> Output {
    let output = Command::new(program)
        .args(["test", "rules"])
        .args(files)
        .current_dir(data_dir())
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", program.display()));
    Output {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

fn enginectl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_enginectl"))
}

/// The test files (`*.yml` at the top of the data directory), sorted.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "test files missing in {}: {names:?}", data_dir().display());
    names
}

/// promtool's recorded answer for `file`.
fn recorded(file: &str) -> Output {
    let stem = file.trim_end_matches(".yml");
    let read = |suffix: &str| {
        let path = data_dir().join(format!("{stem}.promtool.{suffix}"));
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    };
    Output { code: read("code").trim().parse().expect("a code"), stdout: read("stdout"), stderr: read("stderr") }
}

#[track_caller]
fn check(program: &Path, files: &[&str], expected: &Output) {
    let got = run(program, files);
    assert!(
        got == *expected,
        "{} test rules {files:?}: exit {} (expected {})\n--- stdout\n{}--- expected stdout\n{}--- stderr\n{}--- expected stderr\n{}",
        program.display(),
        got.code,
        expected.code,
        got.stdout,
        expected.stdout,
        got.stderr,
        expected.stderr
    );
}

#[test]
fn each_file_answers_as_promtool_recorded() {
    let cases = cases();
    let codes: Vec<i32> = cases.iter().map(|file| recorded(file).code).collect();
    assert!(codes.contains(&0) && codes.contains(&1), "both verdicts are covered: {codes:?}");
    for file in &cases {
        check(&enginectl(), &[file], &recorded(file));
    }
}

#[test]
fn several_files_answer_in_turn() {
    let cases = cases();
    let files: Vec<&str> = cases.iter().map(String::as_str).collect();
    let mut expected = Output { code: 0, stdout: String::new(), stderr: String::new() };
    for file in &files {
        let one = recorded(file);
        expected.code = expected.code.max(one.code);
        expected.stdout.push_str(&one.stdout);
        expected.stderr.push_str(&one.stderr);
    }
    check(&enginectl(), &files, &expected);
}

#[test]
fn a_missing_file_is_refused_before_any_runs() {
    let got = run(&enginectl(), &["recording_pass.yml", "no-such-file.yml"]);
    assert_eq!(
        got,
        Output {
            code: 1,
            stdout: String::new(),
            stderr: "enginectl: error: path 'no-such-file.yml' does not exist, try --help\n".to_string(),
        }
    );
}

/// The recordings are still promtool's answers, and enginectl gives promtool's live ones.
#[test]
fn promtool_still_answers_as_recorded() {
    let Some(promtool) = common::peer("/usr/bin/promtool") else {
        return;
    };
    for file in &cases() {
        check(&promtool, &[file], &recorded(file));
        let live = run(&promtool, &[file]);
        check(&enginectl(), &[file], &live);
    }
}
