//! `escala run` next to GNU parallel: each case has the output GNU parallel's documentation
//! gives; when `parallel` is installed, GNU parallel's own output must match it too (so the
//! expectations are checked against the real thing, and the test passes without it).

use std::process::Command;

/// (arguments after `escala run` / `parallel`, expected stdout)
const CASES: &[(&[&str], &str)] = &[
    (&["-k", "echo", ":::", "a", "b", ":::", "1", "2"], "a 1\na 2\nb 1\nb 2\n"),
    (&["-k", "--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"], "a 1\nb 2\nc 1\n"),
    (&["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2"], "a 1\nb 2\n"),
    (
        &["-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", ":::", "d/s/f.tar.gz"],
        "d/s/f.tar.gz d/s/f.tar f.tar.gz d/s f.tar\n",
    ),
    (&["-k", "echo", "{2}-{1}", ":::", "a", ":::", "b"], "b-a\n"),
    (&["-k", "-j1", "echo", "{#}", "{%}", ":::", "a", "b"], "1 1\n2 1\n"),
    (&["-k", "-j2", "-X", "echo", "x{}y", ":::", "a", "b", "c"], "xay xby\nxcy\n"),
    (&["-k", "-j2", "-m", "echo", "x{}y", ":::", "a", "b", "c"], "xa by\nxcy\n"),
    (&["-k", "-n2", "echo", ":::", "a", "b", "c"], "a b\nc\n"),
    (&["-k", "-N2", "echo", "{2}", "{1}", ":::", "a", "b", "c"], "b a\nc\n"),
    (&["-k", "--colsep", ",", "echo", "{2}", "{1}", ":::", "a,b", "c,d"], "b a\nd c\n"),
    (&["-k", "--tag", "echo", ":::", "a", "b", ":::", "c"], "a c\ta c\nb c\tb c\n"),
    (&["-k", "--tagstring", "<{}>", "echo", "hi", ":::", "a"], "<a>\thi a\n"),
    (&["-k", "--dry-run", "echo", "{}", ":::", "a b", "c"], "echo 'a b'\necho c\n"),
    (&["-k", "echo {} | tr a-z A-Z", ":::", "a", "b"], "A\nB\n"),
    (&["-k", ":::", "echo a", "echo b"], "a\nb\n"),
];

fn has_gnu_parallel() -> bool {
    Command::new("parallel").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn outputs_match_gnu_parallels() {
    let gnu = has_gnu_parallel();
    for (args, want) in CASES {
        let out = Command::new(env!("CARGO_BIN_EXE_escala")).arg("run").args(*args).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), *want, "escala run {args:?}");
        assert!(out.status.success(), "escala run {args:?}");
        if gnu {
            let out = Command::new("parallel").arg("--will-cite").args(*args).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), *want, "GNU parallel {args:?}");
        }
    }
}

#[test]
fn exit_codes_and_joblog_columns_match_gnu_parallels() {
    let cases: &[(&[&str], i32)] = &[
        (&["exit {}", ":::", "0", "3", "4"], 2),
        (&["-j1", "--halt", "now,fail=1", "exit {}", ":::", "0", "3", "0"], 3),
        // A usage error.
        (&["--no-such-option", "echo", ":::", "a"], 255),
    ];
    for (args, code) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_escala")).arg("run").args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(*code), "escala run {args:?}");
        if has_gnu_parallel() {
            let out = Command::new("parallel").arg("--will-cite").args(*args).output().unwrap();
            assert_eq!(out.status.code(), Some(*code), "GNU parallel {args:?}");
        }
    }
}
