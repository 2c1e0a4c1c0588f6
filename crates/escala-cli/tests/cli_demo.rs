//! `escala demo` and argument errors, run end to end as a user would.

use std::process::{Command, Output};

fn escala(args: &[&str]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_escala"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the escala binary runs");
    let pid = child.id();
    (child.wait_with_output().expect("escala finishes"), pid)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table rows: (unit name, kind, where, start seconds, end seconds, outcome).
fn table(out: &str) -> Vec<(String, String, String, f64, f64, String)> {
    let secs = |s: &str| s.trim_end_matches('s').parse::<f64>().expect("a time in seconds");
    out.lines()
        .skip_while(|l| !l.starts_with("unit "))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            // Columns are fixed-width: name 16, kind 14, where 22, start 8, end 8.
            let (name, rest) = l.split_at(17);
            let (kind, rest) = rest.split_at(15);
            let (place, rest) = rest.split_at(23);
            let f: Vec<&str> = rest.split_whitespace().collect();
            (name.trim().into(), kind.trim().into(), place.trim().into(), secs(f[0]), secs(f[1]), f[2].into())
        })
        .collect()
}

#[test]
fn demo_in_spanish_prints_the_seed_lines() {
    let (o, _) = escala(&["demo", "--lang", "es", "--seconds", "0.2"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    for unit in ["Hilo 1", "Demonio 1", "Concurrencia 0", "Concurrencia 1", "Concurrencia 2"] {
        for verb in ["iniciado", "finalizado"] {
            let line = format!("Hilo: {unit} {verb}.");
            assert_eq!(out.lines().filter(|l| *l == line).count(), 1, "`{line}` once in:\n{out}");
        }
    }
    for line in ["Proceso: Proceso 1 iniciado.", "Proceso: Proceso 1 finalizado."] {
        assert_eq!(out.lines().filter(|l| *l == line).count(), 1, "`{line}` once in:\n{out}");
    }
    for i in 0..3 {
        let line = format!("Concurrencia: Concurrencia {i} finalizada.");
        assert!(out.lines().any(|l| l == line), "`{line}` in:\n{out}");
    }
}

#[test]
fn demo_table_shows_overlap_and_a_child_pid() {
    let (o, pid) = escala(&["demo", "--seconds", "0.3"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("Thread: Hilo 1 started."), "{out}");
    assert!(out.contains("Process: Proceso 1 finished."), "{out}");
    let rows = table(&out);
    let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(rows.len(), 6, "{out}");
    for k in ["thread", "process", "daemon-thread", "pool-task"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(rows.iter().all(|r| r.5 == "ok"), "{out}");
    // Concurrency, from the recorded times: every unit started before any unit ended.
    let last_start = rows.iter().map(|r| r.3).fold(0.0, f64::max);
    let first_end = rows.iter().map(|r| r.4).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "units did not overlap:\n{out}");
    // The process unit ran in another pid than escala itself.
    let process = rows.iter().find(|r| r.1 == "process").unwrap();
    assert!(process.2.ends_with("(child)"), "{out}");
    let child_pid: u32 = process.2.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(child_pid, pid);
    assert!(out.contains(&format!("this program is pid {pid}")), "{out}");
    for unit in ["ThreadPool", "thread unit", "process unit", "ProcessPool"] {
        assert!(
            out.lines().any(|l| l.contains("->") && l.contains(unit)),
            "which-unit-when names {unit}:\n{out}"
        );
    }
    assert!(
        rows.iter().filter(|r| r.1 != "process").all(|r| r.2.starts_with(&format!("pid {pid} "))),
        "{out}"
    );
}

#[test]
fn bad_arguments_give_one_line_and_exit_2() {
    for args in [&["demo", "--seconds", "-1"][..], &["demo", "--lang", "fr"], &["no-such-command"], &[]] {
        let (o, _) = escala(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("escala: error:"), "{args:?}: {err}");
    }
}

#[test]
fn version_and_help_exit_0() {
    for flag in ["--version", "--help"] {
        let (o, _) = escala(&[flag]);
        assert!(o.status.success());
        assert!(stdout(&o).contains("escala"));
    }
}
