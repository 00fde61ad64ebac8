//! `ctrack`: Linux netfilter connection tracking, rebuilt in userspace.
//!
//! The binary is a thin front over the libraries: argument parsing ([`cli`]), the replay
//! driver that feeds capture files to the engine ([`replay`]), and output.
//!
//! Exit codes: 0 success; 1 the run failed (unreadable input, bad settings); 2 the
//! command line was wrong; 3 the replay finished but a capture was damaged (everything
//! before the damage was processed and printed).

mod cli;
mod gso;
mod replay;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let code = match args.command {
        cli::Command::Replay(r) => replay::run(r),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctrack: {e:#}");
            std::process::exit(1);
        }
    }
}
