//! `escala run` reads its inputs lazily where GNU parallel does: the first job starts before
//! the end of stdin, of `:::: -` or of an `-a FILE` (here a pipe or a FIFO), and an endless
//! input works. Each test writes one input, waits for that job's output, then writes more.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

mod common;

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(20);

fn escala(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_escala"));
    c.arg("run").args(args);
    c
}

/// Lines of `out` as they come, read on a thread.
fn lines(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &Receiver<String>) -> String {
    rx.recv_timeout(STEP).expect("no output line in time: the job did not run")
}

/// Waits (bounded) for `child` to exit and returns its code; kills it if it does not.
fn exit_code(mut child: Child) -> Option<i32> {
    if !common::ends_within(child.id() as i32, STEP.as_secs()) {
        let _ = child.kill();
        panic!("escala did not exit in time");
    }
    child.wait().unwrap().code()
}

#[test]
fn a_job_starts_as_soon_as_its_stdin_line_arrives() {
    let mut child =
        escala(&["-j2", "echo", "got"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = lines(child.stdout.take().unwrap());
    stdin.write_all(b"a\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_line(&out), "got a", "the first job ran while stdin was still open");
    stdin.write_all(b"b\nc\n").unwrap();
    stdin.flush().unwrap();
    let mut more = [next_line(&out), next_line(&out)];
    more.sort();
    assert_eq!(more, ["got b", "got c"]);
    drop(stdin);
    assert_eq!(exit_code(child), Some(0));
    assert!(out.recv_timeout(Duration::from_millis(100)).is_err(), "nothing more");
}

#[test]
fn a_streamed_first_source_combines_with_the_other_sources() {
    let mut child = escala(&["-k", "echo", "{1}{2}", "::::", "-", ":::", "x", "y"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = lines(child.stdout.take().unwrap());
    stdin.write_all(b"a\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!([next_line(&out), next_line(&out)], ["ax", "ay"]);
    stdin.write_all(b"b").unwrap(); // the end of input ends the last record
    drop(stdin);
    assert_eq!([next_line(&out), next_line(&out)], ["bx", "by"]);
    assert_eq!(exit_code(child), Some(0));
}

#[test]
fn an_arg_file_that_is_a_fifo_is_read_as_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("inputs");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = escala(&["-n2", "-a", fifo.to_str().unwrap(), "echo"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    // Blocks until escala opens the FIFO for reading.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(b"1\n2\n").unwrap();
    w.flush().unwrap();
    assert_eq!(next_line(&out), "1 2", "-n2: a job as soon as two inputs are there");
    w.write_all(b"3\n").unwrap();
    drop(w);
    assert_eq!(next_line(&out), "3", "the last, shorter job at end of input");
    assert_eq!(exit_code(child), Some(0));
}

#[test]
fn an_endless_stdin_stops_at_the_halt() {
    let mut yes = Command::new("yes").stdout(Stdio::piped()).spawn().unwrap();
    let child = escala(&["-j2", "--halt", "now,success=3", "echo"])
        .stdin(yes.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let code = exit_code(child);
    let _ = yes.kill();
    let _ = yes.wait();
    assert_eq!(code, Some(0), "--halt now,success=3 exits 0 after the third success");
}

#[test]
fn inputs_that_need_the_number_of_jobs_are_read_whole_first() {
    // `{##}` needs every input before the first job: still right when the input is stdin.
    let out = escala(&["-k", "echo", "{#}/{##}", "{}"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"a\nb\nc\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "1/3 a\n2/3 b\n3/3 c\n");
}
