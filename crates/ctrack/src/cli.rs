//! Command-line arguments, each flag defined once with its help.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Linux netfilter connection tracking, rebuilt in userspace.
#[derive(Parser, Debug)]
#[command(name = "ctrack", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replay captures through the kernel's conntrack and show what Linux did.
    Replay(Box<ReplayArgs>),
    /// From a ruleset and traffic: whether tracking can go, the remedies for a full table
    /// proved by replay, and the table's size.
    Plan(Box<PlanArgs>),
    /// Time the tracker and the pipeline on named workloads (OVS's benchmark and others).
    Bench(BenchArgs),
    /// Rulesets: `ctrack rules fmt FILE` prints the canonical iptables-save form.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Print FILE (iptables-save output or a script of iptables commands) as iptables-save
    /// prints it after iptables-restore of the same rules.
    Fmt {
        /// The ruleset file (`-` for standard input).
        file: PathBuf,
        /// Print as this iptables does: they differ in small ways (nft merges a rule's
        /// repeated tcp/udp matches into one).
        #[arg(long, value_enum, default_value_t = BackendArg::Nft)]
        backend: BackendArg,
    },
}

/// iptables backends for `--backend`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    /// iptables-nft (Debian's default `iptables`).
    Nft,
    /// iptables-legacy.
    Legacy,
}

impl From<BackendArg> for ctrack_rules::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Nft => ctrack_rules::Backend::Nft,
            BackendArg::Legacy => ctrack_rules::Backend::Legacy,
        }
    }
}

/// Listing formats for `--table`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TableFormat {
    /// `/proc/net/nf_conntrack`.
    Proc,
    /// `conntrack -L -o extended`.
    Conntrack,
    /// One JSON object per entry, one per line.
    Json,
    /// `/proc/net/nf_conntrack_expect`.
    Expect,
    /// `conntrack -L expect`.
    ConntrackExpect,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng, gzip allowed); several are merged by time.
    #[arg(required = true)]
    pub captures: Vec<PathBuf>,

    /// After the replay, print the rulesets with their counters as `iptables-save -c` does.
    #[arg(long)]
    pub counters: bool,

    /// As `iptables -t TABLE -Z` for every table at TIME (epoch seconds): rule and policy
    /// counters count from then on.
    #[arg(long, value_name = "TIME")]
    pub zero_counters_at: Option<f64>,

    /// Write what leaves the host (forwarded and sent packets, after NAT) to FILE, a pcap of
    /// raw IP with nanosecond timestamps, to compare with a capture of the kernel's output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Draw the table's occupancy over the replay, its limit, new connections per second
    /// and table-full drops, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Write one JSON line per packet: index, time, entry hook, fate, verdict, conntrack
    /// state, the rule that decided, and why a packet was dropped.
    #[arg(long, value_name = "FILE")]
    pub verdicts: Option<PathBuf>,

    /// Process packets up to this time (epoch seconds, fractions allowed) and show the
    /// table as the kernel would list it then.
    #[arg(long, value_name = "TIME")]
    pub at: Option<f64>,

    /// Print the table at the end (or at `--at`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub table: Option<TableFormat>,

    /// Write `conntrack -E -o timestamp,extended` lines to FILE.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Print `conntrack -S` lines.
    #[arg(long)]
    pub stats: bool,

    /// Write kernel log lines (`nf_conntrack: table full, dropping packet`) to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Print no summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,

    /// Threads to use: several capture files are read at once, and the verdict and event
    /// lines are written by other threads than the one tracking. The output is the same
    /// whatever the number: the packets pass through one table in capture order.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,

    /// The modelled host: rulesets, addresses, interfaces and settings.
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run (all when none): ovs-single, many-flows, memory, tcp-churn,
    /// syn-flood, pipeline, replay, and cpu (no packets: the machine's own ceiling for
    /// threads against one).
    pub workloads: Vec<String>,

    /// Worker threads, each with its own tracker and flows of its own.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Packets a thread for the lookup workloads (for cpu, units of work).
    #[arg(long, default_value_t = 10_000_000)]
    pub count: u64,

    /// Connection counts for many-flows and memory (repeatable).
    #[arg(long = "flows", default_values_t = [10_000usize, 1_000_000])]
    pub flows: Vec<usize>,

    /// The capture for the replay workload (default: the corpus's echo-connections).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,

    /// One JSON object a line: workload, threads, packets, mpps, ns_per_packet,
    /// bytes_per_conn.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Traffic the host sees (pcap or pcapng, gzip allowed; repeatable): it proves the
    /// remedies by replay and sizes the table.
    #[arg(long = "capture", value_name = "FILE")]
    pub captures: Vec<PathBuf>,

    /// How to print the report.
    #[arg(long, value_enum, default_value_t = crate::plan::Format::Text)]
    pub format: crate::plan::Format,

    /// Write each applicable generated ruleset to DIR (stateless.rules, notrack.rules; the
    /// IPv6 ones as stateless6.rules, notrack6.rules).
    #[arg(long, value_name = "DIR")]
    pub write_rules: Option<PathBuf>,

    /// Also replay the traffic at N times its connection rate (time compressed), against the
    /// configured and the recommended limits.
    #[arg(long, value_name = "N")]
    pub scale: Option<u32>,

    /// Draw the table's occupancy over the capture, its limit, new connections per second
    /// and drops, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// The modelled host: rulesets, addresses, interfaces and settings.
    #[command(flatten)]
    pub host: HostArgs,
}

/// What a replay and a plan both need to model the host.
#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// A ruleset: iptables-save output or a script of iptables/ip6tables commands
    /// (repeatable: an IPv4 and an IPv6 file; the family is read from the file, IPv4 when it
    /// does not say). Loaded like iptables-restore without -c.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,

    /// An IPv6 ruleset, as ip6tables-restore reads it (repeatable).
    #[arg(long = "rules6", value_name = "FILE")]
    pub rules6: Vec<PathBuf>,

    /// An interface of the modelled host, as NAME=ADDRESS/PREFIX (repeatable). Its address
    /// is the host's; `-i`/`-o` match the interface whose subnet holds the peer, else the
    /// first one of the family (the default route).
    #[arg(long = "iface", value_name = "NAME=ADDR/LEN")]
    pub ifaces: Vec<String>,

    /// An address of the modelled host (repeatable). Without it, addresses are learned
    /// from the capture's direction information.
    #[arg(long = "local", value_name = "ADDR")]
    pub locals: Vec<std::net::IpAddr>,

    /// A conntrack sysctl, as `net.netfilter.nf_conntrack_acct=1` (repeatable; later wins).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctls: Vec<String>,

    /// Timeout policies for `CT --timeout`: `nfct add timeout NAME FAMILY PROTO ATTR VALUE…`
    /// commands, one a line, as given to nfct.
    #[arg(long = "nfct", value_name = "FILE")]
    pub nfct: Option<PathBuf>,

    /// A file in sysctl.conf syntax, or the output of `sysctl -a` (repeatable).
    #[arg(long = "sysctl-file", value_name = "FILE")]
    pub sysctl_files: Vec<PathBuf>,

    /// RAM of the modelled host (e.g. 4G, 512M): sizes the table as the kernel does.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// As `options nf_conntrack hashsize=N`: N buckets, nf_conntrack_max = 8 × N.
    #[arg(long, value_name = "N")]
    pub hashsize: Option<u32>,

    /// Seed of the table's hash key (which entries early drop meets, connection ids).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Parses `4G`, `512M`, `65536K`, `1073741824`, with an optional `iB`/`B`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1u64 << 10),
        'M' | 'm' => (&t[..t.len() - 1], 1 << 20),
        'G' | 'g' => (&t[..t.len() - 1], 1 << 30),
        'T' | 't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_operators_write_them() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
