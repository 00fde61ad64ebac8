//! Timeout policies: what `nfct add timeout` defines and `CT --timeout NAME` attaches to the
//! connections a rule creates. Such a connection takes its timeouts from the policy instead
//! of the `nf_conntrack_*_timeout` sysctls.

use crate::conn::TimeoutName;
use crate::settings::Settings;
use ctrack_packet::Family;

/// One policy: its name, the protocols it applies to, and the settings its connections use
/// (the global ones with the policy's timeouts in place).
#[derive(Clone, Debug)]
pub struct TimeoutPolicy {
    /// The name `CT --timeout` refers to.
    pub name: TimeoutName,
    /// `inet` or `inet6`.
    pub family: Family,
    /// The layer-4 protocol number (255 for `generic`).
    pub proto: u8,
    /// The settings with the policy's timeouts.
    pub settings: Settings,
}

/// `generic` in a policy: any protocol without a tracker of its own.
const GENERIC: u8 = 255;

/// The protocols `nfct` knows, their numbers, and each attribute as a sysctl-style key of
/// [`Settings::set`].
fn attribute_key(proto: &str, attr: &str) -> Option<String> {
    let key = match (proto, attr) {
        ("tcp", "retrans") => "tcp_timeout_max_retrans".to_string(),
        ("tcp", a) => format!("tcp_timeout_{a}"),
        ("udp", "unreplied") => "udp_timeout".into(),
        ("udp", "replied") => "udp_timeout_stream".into(),
        ("gre", "unreplied") => "gre_timeout".into(),
        ("gre", "replied") => "gre_timeout_stream".into(),
        ("icmp", "timeout") => "icmp_timeout".into(),
        ("icmpv6", "timeout") => "icmpv6_timeout".into(),
        ("generic", "timeout") => "generic_timeout".into(),
        _ => return None,
    };
    Some(format!("nf_conntrack_{key}"))
}

fn proto_number(name: &str) -> Option<u8> {
    Some(match name {
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "icmp" => 1,
        "icmpv6" => 58,
        "generic" => GENERIC,
        _ => return None,
    })
}

/// Reads one `nfct` command: `[nfct] add timeout NAME FAMILY PROTO ATTR VALUE…`, values in
/// seconds; `base` gives every timeout the policy leaves out.
pub fn parse_command(line: &str, base: &Settings) -> Result<TimeoutPolicy, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let words = words.strip_prefix(&["nfct"]).unwrap_or(&words);
    let [add, timeout, name, family, proto, attrs @ ..] = words else {
        return Err("expected: add timeout NAME FAMILY PROTOCOL ATTRIBUTE VALUE ...".into());
    };
    if (*add, *timeout) != ("add", "timeout") {
        return Err(format!(
            "`{add} {timeout}`: only `add timeout` commands define policies"
        ));
    }
    let name = TimeoutName::new(name)
        .ok_or_else(|| format!("policy name `{name}`: 1 to 31 bytes expected"))?;
    let family = match *family {
        "inet" => Family::V4,
        "inet6" => Family::V6,
        f => return Err(format!("family `{f}`: expected inet or inet6")),
    };
    let number = proto_number(proto).ok_or_else(|| {
        format!("protocol `{proto}`: expected tcp, udp, icmp, icmpv6, gre or generic")
    })?;
    if attrs.is_empty() || attrs.len() % 2 != 0 {
        return Err("expected ATTRIBUTE VALUE pairs after the protocol".into());
    }
    let mut settings = base.clone();
    for pair in attrs.chunks(2) {
        let (attr, value) = (pair[0], pair[1]);
        let key = attribute_key(proto, attr)
            .ok_or_else(|| format!("`{attr}` is not a {proto} timeout attribute"))?;
        settings
            .set(&key, value)
            .map_err(|e| format!("`{attr} {value}`: {e}"))?;
    }
    Ok(TimeoutPolicy {
        name,
        family,
        proto: number,
        settings,
    })
}

/// Reads a file of `nfct add timeout` commands, one a line, `#` comments; an error names
/// the line.
pub fn parse_file(text: &str, base: &Settings) -> Result<Vec<TimeoutPolicy>, (usize, String)> {
    let mut policies: Vec<TimeoutPolicy> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = parse_command(line, base).map_err(|e| (i + 1, e))?;
        if policies.iter().any(|q| q.name == p.name) {
            // nfct refuses a second policy of the same name (EBUSY).
            return Err((
                i + 1,
                format!("policy `{}` already defined", p.name.as_str()),
            ));
        }
        policies.push(p);
    }
    if policies.len() > usize::from(u8::MAX) {
        return Err((0, "more than 255 timeout policies".into()));
    }
    Ok(policies)
}

/// True when the policy applies to a connection of this family and protocol.
pub fn applies(p: &TimeoutPolicy, family: Family, proto: u8) -> bool {
    p.family == family && (p.proto == proto || (p.proto == GENERIC && proto_is_generic(proto)))
}

/// Protocols the generic tracker handles (no tracker of their own here).
fn proto_is_generic(proto: u8) -> bool {
    !matches!(proto, 1 | 6 | 17 | 47 | 58)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn reads_nfct_commands() {
        let base = Settings::default();
        let p = parse_command(
            "nfct add timeout pol inet udp unreplied 7 replied 11",
            &base,
        )
        .unwrap();
        assert_eq!(p.name.as_str(), "pol");
        assert_eq!((p.family, p.proto), (Family::V4, 17));
        assert_eq!(p.settings.udp_timeout, 7 * SEC);
        assert_eq!(p.settings.udp_timeout_stream, 11 * SEC);
        assert_eq!(p.settings.tcp_timeouts, base.tcp_timeouts);
        let t = parse_command("add timeout t inet6 tcp established 100 retrans 5", &base).unwrap();
        assert_eq!(t.settings.tcp_timeouts[3], 100 * SEC);
        assert!(applies(&t, Family::V6, 6) && !applies(&t, Family::V4, 6));
    }

    #[test]
    fn refuses_what_nfct_refuses() {
        let base = Settings::default();
        for bad in [
            "add timeout p inet udp established 5",
            "add timeout p inet sctp established 5",
            "add timeout p inet udp unreplied",
            "add timeout p ipx udp unreplied 5",
            "delete timeout p",
        ] {
            assert!(parse_command(bad, &base).is_err(), "{bad}");
        }
        let twice = "add timeout p inet udp unreplied 5\nadd timeout p inet tcp close 5\n";
        assert_eq!(parse_file(twice, &base).unwrap_err().0, 2);
    }
}
