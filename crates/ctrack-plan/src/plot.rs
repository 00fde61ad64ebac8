//! The table over time as an SVG picture: occupancy with the limit (and the recommended
//! limit), drops marked where they happened, and new connections per second below.

use serde::Serialize;
use std::fmt::Write;

/// What a replay saw over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// Seconds from the start and entries in the table then, one point per change.
    pub entries: Vec<(f64, u64)>,
    /// New connections in each second from the start.
    pub new_per_second: Vec<u64>,
    /// When packets were dropped because the table was full (seconds from the start).
    pub drops: Vec<f64>,
    /// `nf_conntrack_max` in force.
    pub limit: u64,
}

impl Timeline {
    /// Records the entry count at `t`, keeping one point per change.
    pub fn sample(&mut self, t: f64, entries: u64) {
        if self.entries.last().is_none_or(|&(_, e)| e != entries) {
            self.entries.push((t, entries));
        }
    }

    /// Counts a new connection at `t`.
    pub fn new_connection(&mut self, t: f64) {
        let s = t.max(0.0) as usize;
        if self.new_per_second.len() <= s {
            self.new_per_second.resize(s + 1, 0);
        }
        self.new_per_second[s] += 1;
    }

    /// The highest entry count and when.
    pub fn peak(&self) -> (u64, f64) {
        self.entries.iter().fold(
            (0, 0.0),
            |(m, at), &(t, e)| if e > m { (e, t) } else { (m, at) },
        )
    }

    /// The last instant seen.
    pub fn end(&self) -> f64 {
        let last_entry = self.entries.last().map_or(0.0, |p| p.0);
        let last_drop = self.drops.last().copied().unwrap_or(0.0);
        last_entry
            .max(last_drop)
            .max(self.new_per_second.len() as f64)
    }
}

const W: f64 = 820.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP_H: f64 = 260.0;
const BOTTOM_H: f64 = 110.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The picture, with a title; `recommended` draws a second limit line.
pub fn svg(t: &Timeline, title: &str, recommended: Option<u64>) -> String {
    let end = t.end().max(1.0);
    let (peak, _) = t.peak();
    // A recommended limit far above the traffic would flatten it: it is then named, not drawn.
    let scale_top = peak.max(t.limit).max(1);
    let drawn = recommended.filter(|&r| r <= scale_top * 2);
    let ymax = (scale_top.max(drawn.unwrap_or(0)) as f64 * 1.1).max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let x = |s: f64| LEFT + s / end * plot_w;
    let y = |e: f64| 30.0 + TOP_H - e / ymax * TOP_H;
    let h = 30.0 + TOP_H + 40.0 + BOTTOM_H + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Axes of the occupancy panel.
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" y1="30" x2="{LEFT}" y2="{b}" stroke="#333"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/>"##,
        b = 30.0 + TOP_H,
        r = W - RIGHT
    );
    for i in 0..=4 {
        let v = ymax / 1.1 * f64::from(i) / 4.0;
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 6.0,
            y(v) + 4.0,
            v.round()
        );
    }
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#333">{:.0} s</text>"##,
        W - RIGHT,
        30.0 + TOP_H + 16.0,
        end
    );
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="{}" fill="#333">0 s</text>"##,
        30.0 + TOP_H + 16.0
    );
    // Occupancy as a step line.
    let mut path = String::new();
    let mut prev: Option<f64> = None;
    for &(s, e) in &t.entries {
        let (px, py) = (x(s), y(e as f64));
        match prev {
            None => {
                let _ = write!(path, "M{px:.1},{:.1} L{px:.1},{py:.1}", y(0.0));
            }
            Some(_) => {
                let _ = write!(path, " H{px:.1} V{py:.1}");
            }
        }
        prev = Some(py);
    }
    if prev.is_some() {
        let _ = write!(path, " H{:.1}", x(end));
        let _ = writeln!(
            o,
            r##"<path d="{path}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>"##
        );
    }
    let limit_line = |o: &mut String, v: u64, color: &str, label: &str| {
        let yy = y(v as f64);
        let _ = writeln!(
            o,
            r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="{color}" stroke-dasharray="6,4"/><text x="{}" y="{:.1}" fill="{color}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            W - RIGHT,
            yy - 4.0,
            esc(label)
        );
    };
    if t.limit > 0 {
        limit_line(
            &mut o,
            t.limit,
            "#c0392b",
            &format!("nf_conntrack_max = {}", t.limit),
        );
    }
    match (recommended, drawn) {
        (Some(r), Some(_)) => limit_line(&mut o, r, "#27ae60", &format!("recommended = {r}")),
        (Some(r), None) => {
            let _ = writeln!(
                o,
                r##"<text x="{}" y="18" fill="#27ae60" text-anchor="end">recommended nf_conntrack_max = {r} (above this scale)</text>"##,
                W - RIGHT
            );
        }
        _ => {}
    }
    // Drops, as ticks under the axis.
    for &d in &t.drops {
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{a}" x2="{xx:.1}" y2="{b}" stroke="#c0392b"/>"##,
            xx = x(d),
            a = 30.0 + TOP_H - 8.0,
            b = 30.0 + TOP_H
        );
    }
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="{}" fill="#333">entries (blue); table full drops: {} (red ticks)</text>"##,
        30.0 + TOP_H + 30.0,
        t.drops.len()
    );
    // New connections per second.
    let top = 30.0 + TOP_H + 40.0;
    let nmax = t.new_per_second.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = (plot_w / end).max(1.0);
    for (i, &n) in t.new_per_second.iter().enumerate() {
        let bh = n as f64 / nmax * BOTTOM_H;
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#7f8c8d"/>"##,
            x(i as f64),
            top + BOTTOM_H - bh,
            (bw - 1.0).max(1.0)
        );
    }
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><text x="{}" y="{}" text-anchor="end" fill="#333">{}</text><text x="{LEFT}" y="{}" fill="#333">new connections per second (peak {})</text>"##,
        LEFT - 6.0,
        top + 4.0,
        nmax,
        top + BOTTOM_H + 18.0,
        nmax,
        b = top + BOTTOM_H,
        r = W - RIGHT
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_keeps_changes_peak_and_rates() {
        let mut t = Timeline {
            limit: 4,
            ..Timeline::default()
        };
        for (s, e) in [(0.0, 1), (0.5, 1), (1.2, 2), (2.0, 4), (3.0, 3)] {
            t.sample(s, e);
        }
        t.new_connection(0.1);
        t.new_connection(1.9);
        t.new_connection(1.2);
        assert_eq!(t.entries.len(), 4);
        assert_eq!(t.peak(), (4, 2.0));
        assert_eq!(t.new_per_second, vec![1, 2]);
        let s = svg(&t, "a <test>", Some(8));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("nf_conntrack_max = 4") && s.contains("recommended = 8"));
        let far = svg(&t, "far", Some(65536));
        assert!(far.contains("recommended nf_conntrack_max = 65536 (above this scale)"));
        assert!(s.contains("a &lt;test&gt;"));
    }
}
