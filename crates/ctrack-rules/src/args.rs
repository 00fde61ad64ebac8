//! A cursor over the words of one rule.

use crate::error::{OptError, OptResult};

/// The words of a rule, consumed left to right.
pub struct Args<'a> {
    words: &'a [String],
    pos: usize,
}

impl<'a> Args<'a> {
    /// A cursor at the first word.
    pub fn new(words: &'a [String]) -> Args<'a> {
        Args { words, pos: 0 }
    }

    /// The next word, consumed.
    pub fn next_word(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos)?;
        self.pos += 1;
        Some(w.as_str())
    }

    /// The next word, not consumed.
    pub fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).map(|s| s.as_str())
    }

    /// True when `word` was among the words already consumed (before the current option,
    /// which is the last one consumed).
    pub fn seen_before(&self, word: &str) -> bool {
        self.words[..self.pos.saturating_sub(1)]
            .iter()
            .any(|w| w == word)
    }

    /// The value an option needs: an error naming the option when it is missing.
    pub fn value(&mut self, opt: &str) -> OptResult<&'a str> {
        match self.words.get(self.pos) {
            Some(w) => {
                self.pos += 1;
                Ok(w.as_str())
            }
            None => Err(OptError::opt(opt, "option requires an argument")),
        }
    }
}

/// Parses a number in decimal or `0x` hexadecimal.
pub fn number(opt: &str, s: &str) -> OptResult<u64> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse::<u64>()
    };
    r.map_err(|_| OptError::opt(opt, format!("invalid value `{s}'")))
}

/// A number that must fit in `max`.
pub fn bounded(opt: &str, s: &str, max: u64) -> OptResult<u64> {
    let n = number(opt, s)?;
    if n > max {
        return Err(OptError::opt(
            opt,
            format!("value `{s}' out of range (0-{max})"),
        ));
    }
    Ok(n)
}

/// `value[/mask]` with a default mask of all ones.
pub fn value_mask(opt: &str, s: &str) -> OptResult<(u32, u32)> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let v = bounded(opt, v, u64::from(u32::MAX))? as u32;
    let m = match m {
        Some(m) => bounded(opt, m, u64::from(u32::MAX))? as u32,
        None => u32::MAX,
    };
    Ok((v, m))
}

/// A port by number or by a well-known service name.
pub fn port(opt: &str, s: &str) -> OptResult<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(n);
    }
    let p = match s {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "tftp" => 69,
        "http" | "www" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "smtps" | "submissions" => 465,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "postgresql" => 5432,
        _ => {
            return Err(OptError::opt(
                opt,
                format!("invalid port/service `{s}' specified"),
            ))
        }
    };
    Ok(p)
}

/// `port`, `from:to`, `:to` or `from:`.
pub fn port_range(opt: &str, s: &str) -> OptResult<(u16, u16)> {
    match s.split_once(':') {
        None => {
            let p = port(opt, s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { port(opt, a)? };
            let hi = if b.is_empty() { 65535 } else { port(opt, b)? };
            if lo > hi {
                return Err(OptError::opt(
                    opt,
                    format!("invalid portrange `{s}' specified"),
                ));
            }
            Ok((lo, hi))
        }
    }
}
