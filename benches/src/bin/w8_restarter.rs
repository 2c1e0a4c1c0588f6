//! W8's reference: the least a SIGCHLD-driven restarter can do. It starts the command given
//! as arguments and, each time `waitpid` says the child died, starts it again at once.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(!args.is_empty(), "usage: w8_restarter PROGRAM [ARGS...]");
    loop {
        let mut child =
            std::process::Command::new(&args[0]).args(&args[1..]).spawn().expect("the command starts");
        // Blocks until SIGCHLD's child is reaped: no polling.
        let _ = child.wait();
    }
}
