//! The `escala` command. Parses arguments, hands a plain config to the subcommand, and maps
//! errors to one `escala: error: …` line and a non-zero exit code.

mod cli;
mod cmd;
mod config;
mod timeline;

use std::process::ExitCode;

fn main() -> ExitCode {
    // In a re-executed child this runs the requested task and never returns.
    let exit_policy = escala::init();
    let config = match cli::parse() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let result = cmd::run(config);
    drop(exit_policy);
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("escala: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
