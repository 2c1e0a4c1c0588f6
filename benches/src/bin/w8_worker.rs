//! W8's worker: on start, writes `<pid> <CLOCK_MONOTONIC ns>` as one line to the FIFO named
//! by `W8_FIFO`, then waits to be killed. Every supervisor in W8 runs this same program.

use std::io::Write;

fn main() {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("a monotonic clock");
    let ns = t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128;
    let path = std::env::var_os("W8_FIFO").expect("W8_FIFO names the driver's FIFO");
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("the FIFO opens");
    // One write of one short line: atomic on a pipe.
    f.write_all(format!("{} {ns}\n", std::process::id()).as_bytes()).expect("the line is written");
    drop(f);
    loop {
        std::thread::park();
    }
}
