//! `escala run` end to end: the built binary against GNU parallel's documented behaviour
//! (inputs, replacement strings, packing, output, joblog, halting, timeouts, retries).
//! Signals and orphans are in `cli_run_signals.rs`.

use assert_cmd::Command;
use predicates::prelude::*;

fn escala() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_escala"));
    c.arg("run");
    c
}

fn stdout_of(args: &[&str]) -> String {
    let out = escala().args(args).timeout(std::time::Duration::from_secs(60)).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn sorted(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

#[test]
fn args_after_triple_colon_form_a_cartesian_product_last_fastest() {
    assert_eq!(stdout_of(&["-k", "echo", ":::", "a", "b", ":::", "1", "2"]), "a 1\na 2\nb 1\nb 2\n");
}

#[test]
fn link_wraps_shorter_sources_and_plus_sources_stop_at_the_shortest() {
    assert_eq!(
        stdout_of(&["-k", "--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"]),
        "a 1\nb 2\nc 1\n"
    );
    assert_eq!(stdout_of(&["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2"]), "a 1\nb 2\n");
}

#[test]
fn inputs_from_files_stdin_and_arg_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in.txt");
    std::fs::write(&f, "x\ny\n").unwrap();
    let f = f.to_str().unwrap();
    assert_eq!(stdout_of(&["-k", "echo", "::::", f]), "x\ny\n");
    assert_eq!(stdout_of(&["-k", "-a", f, "echo", "{}", "{}"]), "x x\ny y\n");
    let out = escala().args(["-k", "echo", "::::", "-", ":::", "1"]).write_stdin("s\nt\n").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "s 1\nt 1\n");
    let out = escala().args(["-k", "echo", "got"]).write_stdin("p\nq\n").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "got p\ngot q\n");
}

#[test]
fn null_and_custom_delimiters_and_column_separators() {
    let out = escala().args(["-k", "-0", "echo"]).write_stdin("a b\0c\0").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a b\nc\n");
    let out = escala().args(["-k", "-d", ",", "echo"]).write_stdin("a,b").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a\nb\n");
    assert_eq!(stdout_of(&["-k", "--colsep", ",", "echo", "{2}", "{1}", ":::", "a,b", "c,d"]), "b a\nd c\n");
}

#[test]
fn replacement_strings_match_gnu_parallel() {
    let out = stdout_of(&["echo", "{}", "{.}", "{/}", "{//}", "{/.}", ":::", "dir/sub/file.tar.gz"]);
    assert_eq!(out, "dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar\n");
    let out = stdout_of(&["-k", "echo", "{2.}", "{1/}", "{1//}", "{2/.}", ":::", "a/b", ":::", "c/d.e"]);
    assert_eq!(out, "c/d b a d\n");
    // {#} counts jobs from 1, {%} is the slot (one slot: always 1), {##} the total.
    assert_eq!(stdout_of(&["-k", "-j1", "echo", "{#}", "{%}", "{##}", ":::", "a", "b"]), "1 1 2\n2 1 2\n");
    // No replacement string: the arguments are appended, one word each.
    assert_eq!(stdout_of(&["printf", "%s:", ":::", "a b"]), "a b:");
}

#[test]
fn packing_with_x_m_n_and_capital_n() {
    assert_eq!(stdout_of(&["-k", "-j2", "-X", "echo", "x{}y", ":::", "a", "b", "c"]), "xay xby\nxcy\n");
    assert_eq!(stdout_of(&["-k", "-j2", "-m", "echo", "x{}y", ":::", "a", "b", "c"]), "xa by\nxcy\n");
    assert_eq!(stdout_of(&["-k", "-n2", "echo", ":::", "a", "b", "c"]), "a b\nc\n");
    assert_eq!(stdout_of(&["-k", "-N2", "echo", "{2}", "{1}", ":::", "a", "b", "c"]), "b a\nc\n");
    assert_eq!(stdout_of(&["-k", "-N0", "echo", "hi", ":::", "a", "b"]), "hi\nhi\n");
}

#[test]
fn keep_order_holds_back_jobs_that_finish_early() {
    // The first job works longest; -k still prints it first.
    // As in GNU parallel, the command's words are joined into one shell line.
    let out = stdout_of(&["-k", "-j3", "sleep {}; echo {}", ":::", "0.3", "0", "0.1"]);
    assert_eq!(out, "0.3\n0\n0.1\n");
}

#[test]
fn group_keeps_each_jobs_lines_together_and_tags_prefix_them() {
    let out = stdout_of(&["-j2", "--tag", "echo one; echo two", ":::", "a", "b"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].split('\t').next(), lines[1].split('\t').next(), "{out}");
    assert_eq!(sorted(&out), ["a\tone", "a\ttwo a", "b\tone", "b\ttwo b"]);
    assert_eq!(stdout_of(&["--tagstring", "<{}>", "echo", "hi", ":::", "a"]), "<a>\thi a\n");
}

#[test]
fn line_buffer_and_ungroup_pass_the_output() {
    assert_eq!(sorted(&stdout_of(&["--line-buffer", "--tag", "echo", ":::", "x", "y"])), ["x\tx", "y\ty"]);
    assert_eq!(sorted(&stdout_of(&["-u", "echo", ":::", "x", "y"])), ["x", "y"]);
    // With -k, whole jobs in input order, even when a later one ends first.
    assert_eq!(
        stdout_of(&["-k", "--line-buffer", "-j2", "sleep {}; echo {}", ":::", "0.3", "0"]),
        "0.3\n0\n"
    );
}

#[test]
fn exit_code_counts_failed_jobs_up_to_101() {
    escala().args(["exit {}", ":::", "0", "3", "4"]).assert().code(2);
    let many: Vec<String> = (0..102).map(|i| i.to_string()).collect();
    escala().args(["-N0", "false", ":::"]).args(&many).assert().code(101);
    escala().args(["true", ":::", "a"]).assert().code(0);
}

#[test]
fn commands_without_shell_syntax_run_without_a_shell() {
    // With SHELL pointing nowhere, only a command run directly can succeed.
    escala()
        .env("SHELL", "/nonexistent/sh")
        .args(["echo", ":::", "$HOME"])
        .assert()
        .success()
        .stdout("$HOME\n");
    escala()
        .env("SHELL", "/bin/sh")
        .args(["echo $PARALLEL_SEQ {}", ":::", "a"])
        .assert()
        .success()
        .stdout("1 a\n");
    escala().env("SHELL", "/nonexistent/sh").args(["echo {} | cat", ":::", "a"]).assert().code(1);
    // Each input is a command line when there is no command.
    assert_eq!(stdout_of(&["-k", ":::", "echo a", "echo b | tr b c"]), "a\nc\n");
}

#[test]
fn a_missing_program_fails_the_job_with_127() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    escala()
        .args(["--joblog", log.to_str().unwrap(), "no-such-program-here", ":::", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such-program-here"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().nth(1).unwrap().split('\t').nth(6), Some("127"));
}

#[test]
fn dry_run_prints_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let m = marker.to_str().unwrap();
    let out = stdout_of(&["--dry-run", "touch", "{}", ":::", m, "a b"]);
    assert_eq!(out, format!("touch {m}\ntouch 'a b'\n"));
    assert!(!marker.exists());
}

#[test]
fn bad_input_is_one_error_line_and_a_failure() {
    for args in [
        &["-j", "lots", "echo", ":::", "a"][..],
        &["--halt", "whenever", "echo", ":::", "a"],
        &["echo", "::::", "/no/such/input/file"],
        &["--colsep", "(", "echo", ":::", "a"],
        &["--timeout", "-3", "echo", ":::", "a"],
    ] {
        let out = escala().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("escala: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn usage_errors_exit_255_like_gnu_parallel_and_help_and_version_exit_0() {
    for args in [
        &["--no-such-option", "echo", ":::", "a"][..],
        &["--timeout", "-3", "echo", ":::", "a"],
        &["--retries", "many", "echo", ":::", "a"],
        &["-j", "lots", "echo", ":::", "a"],
        &["--resume", "echo", ":::", "a"],
    ] {
        let out = escala().args(args).timeout(std::time::Duration::from_secs(60)).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("escala: error: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    escala().arg("--help").assert().code(0).stdout(predicate::str::contains("Usage: escala run"));
    escala().arg("--version").assert().code(0).stdout(predicate::str::starts_with("escala-run "));
    // The other subcommands keep the usual 2.
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_escala")).args(["demo", "--bogus"]).output();
    assert_eq!(demo.unwrap().status.code(), Some(2));
}

#[test]
fn bar_draws_nothing_when_stderr_is_not_a_terminal() {
    escala().args(["--bar", "-k", "echo", ":::", "a", "b"]).assert().success().stdout("a\nb\n").stderr("");
}

#[test]
fn pipe_cuts_stdin_into_blocks_at_line_ends() {
    let seq: String = (1..=10).map(|i| format!("{i}\n")).collect();
    let out = escala().args(["--pipe", "--block", "10", "-k", "wc", "-l"]).write_stdin(seq).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "5\n4\n1\n");
    // Jobs that never read their block still end, and nothing hangs.
    let big: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    escala().args(["--pipe", "--block", "100K", "true"]).write_stdin(big.clone()).assert().success();
    let out = escala().args(["--pipe", "-k", "wc", "-l"]).write_stdin(big).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "100000\n");
}

#[test]
fn keep_order_behind_a_slow_job_does_not_run_out_of_file_descriptors() {
    // Job 1 waits until job 600 has started (a FIFO), so about 595 outputs are held for -k
    // meanwhile; with 256 descriptors, two open files per held output would not fit.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let f = fifo.display();
    let job = format!("test {{}} -eq 1 && read x < {f}; test {{}} -eq 600 && echo go > {f}; echo {{}}");
    let exe = env!("CARGO_BIN_EXE_escala");
    let script = format!("ulimit -n 256 && seq 600 | timeout 120 {exe} run -k -j4 '{job}'");
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: String = (1..=600).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}
