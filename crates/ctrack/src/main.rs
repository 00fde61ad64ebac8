//! `ctrack`: Linux netfilter connection tracking, rebuilt in userspace.
//!
//! The binary is a thin front over the libraries: argument parsing ([`cli`]), the driver
//! that feeds capture files to the engine ([`drive`]), `ctrack replay` ([`replay`]) and
//! `ctrack plan` ([`plan`]), and output.
//!
//! Exit codes: 0 success; 1 the run failed (unreadable input, bad settings); 2 the
//! command line was wrong; 3 the replay finished but a capture was damaged (everything
//! before the damage was processed and printed).

mod bench;
mod cli;
mod copies;
mod drive;
mod gso;
mod lines;
mod plan;
mod replay;

use clap::Parser;

/// Counts the bytes in use, for `ctrack bench`'s bytes per connection.
#[global_allocator]
static ALLOC: bench::Counting = bench::Counting;

/// `ctrack rules fmt`: the canonical form on standard output.
fn rules_fmt(file: &std::path::Path, backend: ctrack_rules::Backend) -> anyhow::Result<i32> {
    use anyhow::Context;
    let (text, name) = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        (s, "-".to_string())
    } else {
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (s, file.display().to_string())
    };
    let rules = ctrack_rules::load(&text, &name)?;
    print!("{}", rules.save(false, backend));
    Ok(0)
}

fn main() {
    let args = cli::Cli::parse();
    let code = match args.command {
        cli::Command::Replay(r) => replay::run(*r),
        cli::Command::Plan(p) => plan::run(*p),
        cli::Command::Bench(b) => bench::run(b),
        cli::Command::Rules {
            command: cli::RulesCommand::Fmt { file, backend },
        } => rules_fmt(&file, backend.into()),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctrack: {e:#}");
            std::process::exit(1);
        }
    }
}
