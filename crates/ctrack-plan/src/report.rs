//! What the plan found, and how it is printed: for a terminal, as Markdown, JSON or HTML.
//!
//! The report is built as a short list of blocks (headings, paragraphs, lists, tables,
//! code, pictures), and each format renders the same blocks, so the formats never disagree.

use crate::deps::{Dependency, Verdict};
use crate::rewrite::{Generated, Service};
use crate::sizing::Sizing;
use serde::Serialize;

/// A packet whose verdict a remedy changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Index of the frame in the capture.
    pub index: usize,
    /// Its time (epoch seconds).
    pub time: String,
    /// The packet, in a few words.
    pub packet: String,
    /// Its fate with the original ruleset.
    pub before: String,
    /// Its fate with the remedy.
    pub after: String,
    /// Why, when it is understood.
    pub why: String,
}

/// A remedy proved by replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Proof {
    /// Packets replayed.
    pub packets: u64,
    /// Every packet whose fate differs (table-full drops that pass now aside).
    pub differences: Vec<Difference>,
    /// Packets dropped for a full table with the original that pass with the remedy.
    pub fixed: u64,
    /// Table peak with the original ruleset and the configured limit.
    pub peak_before: u64,
    /// Table peak with the remedy.
    pub peak_after: u64,
    /// Packets dropped for a full table, before and after.
    pub table_full_before: u64,
    /// With the remedy.
    pub table_full_after: u64,
}

/// One remedy: whether it applies, why, what it generates, and its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Remedy {
    /// `no-conntrack`, `stateless`, `notrack` or `sizing`.
    pub name: &'static str,
    /// A title for people.
    pub title: &'static str,
    /// Applies to this host.
    pub applicable: bool,
    /// Why (or why not), and what to know.
    pub notes: Vec<String>,
    /// Rulesets it generates (one a family).
    pub rulesets: Vec<Generated>,
    /// Replay of the capture with it.
    pub proof: Option<Proof>,
}

/// Drops at N times the traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WhatIf {
    /// N.
    pub factor: u32,
    /// How the traffic was scaled.
    pub how: &'static str,
    /// `(nf_conntrack_max, peak, table-full drops)` with the configured limit.
    pub configured: (u64, u64, u64),
    /// The same with the recommended limit.
    pub recommended: (u64, u64, u64),
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Ruleset files read.
    pub rules: Vec<String>,
    /// Captures replayed.
    pub captures: Vec<String>,
    /// Whether tracking can go.
    pub verdict: Verdict,
    /// The verdict, explained.
    pub verdict_text: String,
    /// Every rule that needs conntrack.
    pub dependencies: Vec<Dependency>,
    /// Traffic classes (services) from the rules and the capture.
    pub services: Vec<Service>,
    /// The remedies, each applicable or not.
    pub remedies: Vec<Remedy>,
    /// The remedy recommended.
    pub recommended: &'static str,
    /// Table sizing.
    pub sizing: Option<Sizing>,
    /// The host's RAM was not given and is assumed.
    pub memory_assumed: bool,
    /// `--scale`.
    pub what_if: Option<WhatIf>,
    /// Checks to run on the host after applying.
    pub after: Vec<String>,
    /// Pictures (title, SVG), for HTML.
    #[serde(skip)]
    pub plots: Vec<(String, String)>,
    /// Files written (`--write-rules`, `--plot`).
    pub written: Vec<String>,
}

enum Block {
    H(u8, String),
    P(String),
    List(Vec<String>),
    Code(String),
    Table(Vec<&'static str>, Vec<Vec<String>>),
    Svg(String),
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

impl Report {
    fn blocks(&self) -> Vec<Block> {
        use Block::*;
        let mut b = vec![H(1, "ctrack plan".to_string())];
        b.push(P(format!(
            "Ruleset: {}. Traffic: {}.",
            self.rules.join(", "),
            if self.captures.is_empty() {
                "none given (no proof by replay, no sizing from traffic)".to_string()
            } else {
                self.captures.join(", ")
            }
        )));
        b.push(H(2, "Verdict".to_string()));
        b.push(P(self.verdict_text.clone()));
        b.push(H(2, "What needs tracking".to_string()));
        if self.dependencies.is_empty() {
            b.push(P("No rule depends on connection tracking.".to_string()));
        } else {
            b.push(Table(
                vec!["where", "family", "table/chain", "rule", "needs"],
                self.dependencies
                    .iter()
                    .map(|d| {
                        vec![
                            if d.origin.is_empty() {
                                "-".to_string()
                            } else {
                                d.origin.clone()
                            },
                            d.family.to_string(),
                            format!("{}/{}", d.table, d.chain),
                            d.text.clone(),
                            d.needs
                                .iter()
                                .map(|n| n.describe())
                                .collect::<Vec<_>>()
                                .join("; "),
                        ]
                    })
                    .collect(),
            ));
        }
        if !self.services.is_empty() {
            b.push(H(2, "Traffic classes".to_string()));
            b.push(Table(
                vec![
                    "family",
                    "first packet in",
                    "class",
                    "rule",
                    "connections seen",
                ],
                self.services
                    .iter()
                    .map(|s| {
                        vec![
                            s.family.to_string(),
                            s.chain.clone(),
                            if s.ports.0 == s.ports.1 {
                                format!("{}/{}", s.proto, s.ports.0)
                            } else {
                                format!("{}/{}:{}", s.proto, s.ports.0, s.ports.1)
                            },
                            s.origin
                                .clone()
                                .unwrap_or_else(|| "(capture only)".to_string()),
                            s.connections.to_string(),
                        ]
                    })
                    .collect(),
            ));
        }
        b.push(H(2, "Remedies".to_string()));
        for r in &self.remedies {
            let mark = if r.name == self.recommended {
                "recommended"
            } else if r.applicable {
                "applicable"
            } else {
                "not applicable"
            };
            b.push(H(3, format!("{} ({mark})", r.title)));
            if !r.notes.is_empty() {
                b.push(List(r.notes.clone()));
            }
            for g in &r.rulesets {
                if !g.blockers.is_empty() {
                    b.push(P(format!(
                        "What keeps the {} rewrite ({}) from applying:",
                        g.name, g.family
                    )));
                    b.push(List(g.blockers.clone()));
                }
                if !g.notes.is_empty() {
                    b.push(P(format!("{} ruleset ({}):", g.name, g.family)));
                    b.push(List(g.notes.clone()));
                }
                b.push(Code(g.text.clone()));
            }
            if let Some(p) = &r.proof {
                b.push(P(format!(
                    "Proof by replay: {} packets, {} with another fate, {} table-full drops that pass now; table peak {} before, {} after; table-full drops {} before, {} after.",
                    p.packets,
                    p.differences.len(),
                    p.fixed,
                    p.peak_before,
                    p.peak_after,
                    p.table_full_before,
                    p.table_full_after
                )));
                if !p.differences.is_empty() {
                    b.push(Table(
                        vec!["frame", "time", "packet", "before", "after", "why"],
                        p.differences
                            .iter()
                            .take(50)
                            .map(|d| {
                                vec![
                                    d.index.to_string(),
                                    d.time.clone(),
                                    d.packet.clone(),
                                    d.before.clone(),
                                    d.after.clone(),
                                    d.why.clone(),
                                ]
                            })
                            .collect(),
                    ));
                    if p.differences.len() > 50 {
                        b.push(P(format!(
                            "… and {} more (all in --format json).",
                            p.differences.len() - 50
                        )));
                    }
                }
            }
        }
        if let Some(s) = &self.sizing {
            b.push(H(2, "Sizing".to_string()));
            b.push(P(format!(
                "Peak concurrent entries the traffic needs (replayed without a limit): {} at {:.1} s. New connections: {} in the busiest second, {:.1} per second on average. Limit now: nf_conntrack_max = {}, {} buckets. RAM: {}{}. Headroom policy: {}.",
                s.peak,
                s.peak_at,
                s.new_per_second_peak,
                s.new_per_second_mean,
                s.configured.max,
                s.configured.buckets,
                human_bytes(s.memory),
                if self.memory_assumed { " (assumed; give --memory)" } else { "" },
                s.policy
            )));
            b.push(Table(
                vec!["rule", "buckets", "nf_conntrack_max", "memory"],
                vec![
                    vec![
                        format!("current kernel default for {}", human_bytes(s.memory)),
                        s.current_rule.buckets.to_string(),
                        s.current_rule.max.to_string(),
                        human_bytes(crate::sizing::table_bytes(
                            s.current_rule.max,
                            s.current_rule.buckets,
                        )),
                    ],
                    vec![
                        format!(
                            "older rule (RAM/16384, max = 4 × buckets) for {}",
                            human_bytes(s.memory)
                        ),
                        s.older_rule.buckets.to_string(),
                        s.older_rule.max.to_string(),
                        human_bytes(crate::sizing::table_bytes(
                            s.older_rule.max,
                            s.older_rule.buckets,
                        )),
                    ],
                    vec![
                        "recommended (buckets = max, current ratio)".to_string(),
                        s.hashsize.to_string(),
                        s.max.to_string(),
                        human_bytes(s.bytes),
                    ],
                    vec![
                        "recommended with the older ratio (buckets = max / 4)".to_string(),
                        s.hashsize_older.to_string(),
                        s.max.to_string(),
                        human_bytes(s.bytes_older),
                    ],
                ],
            ));
            b.push(P(format!(
                "Memory: about {} bytes an entry (the nf_conn slab object and its extensions) and {} a bucket.",
                crate::sizing::BYTES_PER_ENTRY,
                crate::sizing::BYTES_PER_BUCKET
            )));
            for (file, text) in s.config() {
                b.push(P(format!("{file}:")));
                b.push(Code(text));
            }
        }
        if let Some(w) = &self.what_if {
            b.push(H(
                2,
                format!("What if the traffic were {} times as busy", w.factor),
            ));
            b.push(P(w.how.to_string()));
            b.push(Table(
                vec!["limit", "nf_conntrack_max", "peak", "table-full drops"],
                vec![
                    vec![
                        "configured".to_string(),
                        w.configured.0.to_string(),
                        w.configured.1.to_string(),
                        w.configured.2.to_string(),
                    ],
                    vec![
                        "recommended".to_string(),
                        w.recommended.0.to_string(),
                        w.recommended.1.to_string(),
                        w.recommended.2.to_string(),
                    ],
                ],
            ));
        }
        for (title, svg) in &self.plots {
            b.push(H(2, title.clone()));
            b.push(Svg(svg.clone()));
        }
        b.push(H(2, "After applying".to_string()));
        b.push(List(self.after.clone()));
        if !self.written.is_empty() {
            b.push(H(2, "Files written".to_string()));
            b.push(List(self.written.clone()));
        }
        b
    }

    /// For a terminal.
    pub fn text(&self) -> String {
        let mut o = String::new();
        for b in self.blocks() {
            match b {
                Block::H(1, t) => {
                    o.push_str(&format!("{t}\n{}\n\n", "=".repeat(t.chars().count())))
                }
                Block::H(2, t) => {
                    o.push_str(&format!("{t}\n{}\n\n", "-".repeat(t.chars().count())))
                }
                Block::H(_, t) => o.push_str(&format!("* {t}\n\n")),
                Block::P(t) => o.push_str(&format!("{}\n\n", wrap(&t, 92, ""))),
                Block::List(items) => {
                    for i in items {
                        o.push_str(&format!("{}\n", wrap(&i, 92, "  - ").trim_end()));
                    }
                    o.push('\n');
                }
                Block::Code(t) => {
                    for l in t.lines() {
                        o.push_str(&format!("    {l}\n"));
                    }
                    o.push('\n');
                }
                Block::Table(h, rows) => {
                    for r in rows {
                        let parts: Vec<String> =
                            h.iter().zip(&r).map(|(k, v)| format!("{k}: {v}")).collect();
                        o.push_str(&format!("  - {}\n", parts.join("; ")));
                    }
                    o.push('\n');
                }
                Block::Svg(_) => o.push_str("  (picture: see --plot or --format html)\n\n"),
            }
        }
        o
    }

    /// As Markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        for b in self.blocks() {
            match b {
                Block::H(n, t) => o.push_str(&format!("{} {t}\n\n", "#".repeat(usize::from(n)))),
                Block::P(t) => o.push_str(&format!("{t}\n\n")),
                Block::List(items) => {
                    for i in items {
                        o.push_str(&format!("- {i}\n"));
                    }
                    o.push('\n');
                }
                Block::Code(t) => o.push_str(&format!("```\n{}\n```\n\n", t.trim_end())),
                Block::Table(h, rows) => {
                    o.push_str(&format!("| {} |\n", h.join(" | ")));
                    o.push_str(&format!("|{}\n", "---|".repeat(h.len())));
                    for r in rows {
                        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
                        o.push_str(&format!("| {} |\n", cells.join(" | ")));
                    }
                    o.push('\n');
                }
                Block::Svg(_) => o.push_str("(picture: see --plot or --format html)\n\n"),
            }
        }
        o
    }

    /// As one HTML page, pictures inline.
    pub fn html(&self) -> String {
        let e = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut o = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ctrack plan</title>\n<style>body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}</style></head><body>\n",
        );
        for b in self.blocks() {
            match b {
                Block::H(n, t) => o.push_str(&format!("<h{n}>{}</h{n}>\n", e(&t))),
                Block::P(t) => o.push_str(&format!("<p>{}</p>\n", e(&t))),
                Block::List(items) => {
                    o.push_str("<ul>\n");
                    for i in items {
                        o.push_str(&format!("<li>{}</li>\n", e(&i)));
                    }
                    o.push_str("</ul>\n");
                }
                Block::Code(t) => o.push_str(&format!("<pre>{}</pre>\n", e(&t))),
                Block::Table(h, rows) => {
                    o.push_str("<table><tr>");
                    for c in h {
                        o.push_str(&format!("<th>{}</th>", e(c)));
                    }
                    o.push_str("</tr>\n");
                    for r in rows {
                        o.push_str("<tr>");
                        for c in r {
                            o.push_str(&format!("<td>{}</td>", e(&c)));
                        }
                        o.push_str("</tr>\n");
                    }
                    o.push_str("</table>\n");
                }
                Block::Svg(s) => o.push_str(&format!("<figure>{s}</figure>\n")),
            }
        }
        o.push_str("</body></html>\n");
        o
    }

    /// As JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Wraps words at `width`, the first line after `lead`, the others indented as deep.
fn wrap(text: &str, width: usize, lead: &str) -> String {
    let indent = " ".repeat(lead.chars().count());
    let mut out = String::from(lead);
    let mut col = lead.chars().count();
    let mut first = true;
    for w in text.split(' ') {
        let n = w.chars().count();
        if !first && col + 1 + n > width {
            out.push('\n');
            out.push_str(&indent);
            col = indent.len();
        } else if !first {
            out.push(' ');
            col += 1;
        }
        out.push_str(w);
        col += n;
        first = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            rules: vec!["host.rules".to_string()],
            captures: vec![],
            verdict: Verdict::CanGoForClasses,
            verdict_text: "Tracking can go for named classes.".to_string(),
            dependencies: vec![],
            services: vec![],
            remedies: vec![Remedy {
                name: "notrack",
                title: "NOTRACK <classes>",
                applicable: true,
                notes: vec!["a note".to_string()],
                rulesets: vec![],
                proof: Some(Proof {
                    packets: 10,
                    ..Proof::default()
                }),
            }],
            recommended: "notrack",
            sizing: None,
            memory_assumed: false,
            what_if: None,
            after: vec!["check dmesg".to_string()],
            plots: vec![("occupancy".to_string(), "<svg></svg>".to_string())],
            written: vec![],
        }
    }

    #[test]
    fn every_format_carries_the_same_content() {
        let r = report();
        for out in [r.text(), r.markdown(), r.html()] {
            assert!(out.contains("Tracking can go for named classes."));
            assert!(out.contains("recommended"));
            assert!(out.contains("10 packets, 0 with another fate, 0 table-full drops"));
        }
        assert!(r.html().contains("<figure><svg></svg></figure>"));
        assert!(r.html().contains("NOTRACK &lt;classes&gt;"));
        let j: serde_json::Value = serde_json::from_str(&r.json()).expect("valid JSON");
        assert_eq!(j["verdict"], "can-go-for-classes");
        assert_eq!(j["remedies"][0]["proof"]["packets"], 10);
    }

    #[test]
    fn long_lines_wrap() {
        let w = wrap("aaaa bbbb cccc", 9, "- ");
        assert_eq!(w, "- aaaa\n  bbbb\n  cccc");
    }
}
