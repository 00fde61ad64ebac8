//! Addresses with masks as iptables reads and prints them.

use crate::error::{OptError, OptResult};
use ctrack_packet::{Addr, Family};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address and mask (`-s 10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// The address, already masked.
    pub addr: Addr,
    /// The mask.
    pub mask: Addr,
}

/// `a` with the bits of `mask` kept and the rest cleared, as one 128-bit operation.
pub(crate) fn masked(a: Addr, mask: Addr) -> Addr {
    Addr((u128::from_ne_bytes(a.0) & u128::from_ne_bytes(mask.0)).to_ne_bytes())
}

/// The mask of a prefix length (`/24`), for the family's address size.
pub(crate) fn prefix_mask(family: Family, len: u32) -> Addr {
    let bits = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let len = len.min(bits);
    let mut m = [0u8; 16];
    for (i, b) in m.iter_mut().enumerate().take((bits / 8) as usize) {
        let start = i as u32 * 8;
        *b = if len >= start + 8 {
            0xff
        } else if len > start {
            0xffu8 << (8 - (len - start))
        } else {
            0
        };
    }
    Addr(m)
}

fn parse_ip(family: Family, s: &str) -> Option<Addr> {
    match family {
        Family::V4 => s.parse::<Ipv4Addr>().ok().map(|a| Addr::v4(a.octets())),
        Family::V6 => s.parse::<Ipv6Addr>().ok().map(|a| Addr::v6(a.octets())),
    }
}

impl Net {
    /// Parses `addr`, `addr/len` or `addr/mask`. Host names are not resolved: the replay
    /// must not depend on the machine's resolver.
    pub fn parse(family: Family, s: &str, opt: &str) -> OptResult<Net> {
        let (a, m) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        let addr = parse_ip(family, a).ok_or_else(|| {
            OptError::opt(
                opt,
                format!("host/network `{a}' not found (names are not resolved; give an address)"),
            )
        })?;
        let mask = match m {
            None => prefix_mask(family, 128),
            Some(m) => {
                if let Ok(len) = m.parse::<u32>() {
                    let max = if family == Family::V4 { 32 } else { 128 };
                    if len > max {
                        return Err(OptError::opt(opt, format!("invalid mask `{m}' specified")));
                    }
                    prefix_mask(family, len)
                } else {
                    parse_ip(family, m).ok_or_else(|| {
                        OptError::opt(opt, format!("invalid mask `{m}' specified"))
                    })?
                }
            }
        };
        Ok(Net {
            addr: masked(addr, mask),
            mask,
        })
    }

    /// True when `a` is inside.
    pub fn contains(&self, a: Addr) -> bool {
        // One 128-bit compare: rules test it for every packet that reaches them.
        masked(a, self.mask) == self.addr
    }

    /// As iptables-save prints it: `addr/len` for a contiguous mask, `addr/mask` otherwise.
    pub fn save(&self, family: Family) -> String {
        let bits = match family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        let ones: u32 = self.mask.0.iter().map(|b| b.count_ones()).sum();
        let ip = self.addr.to_ip(family);
        if prefix_mask(family, ones) == self.mask {
            format!("{ip}/{ones}")
        } else {
            let m = self.mask.to_ip(family);
            let _ = bits;
            format!("{ip}/{m}")
        }
    }

    /// Printed without `/len` when the mask is full (conntrack match style).
    pub fn save_short(&self, family: Family) -> String {
        if self.mask == prefix_mask(family, 128) {
            self.addr.to_ip(family).to_string()
        } else {
            self.save(family)
        }
    }
}

/// An address for iprange and similar: parsed in the family.
pub fn parse_addr(family: Family, s: &str, opt: &str) -> OptResult<Addr> {
    parse_ip(family, s).ok_or_else(|| OptError::opt(opt, format!("invalid address `{s}'")))
}

/// Prints an address.
pub fn show(a: Addr, family: Family) -> IpAddr {
    a.to_ip(family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let n = Net::parse(Family::V4, "10.1.2.3/255.0.0.0", "-s").unwrap();
        assert_eq!(n.save(Family::V4), "10.0.0.0/8");
        assert_eq!(
            Net::parse(Family::V4, "10.1.2.3", "-s")
                .unwrap()
                .save(Family::V4),
            "10.1.2.3/32"
        );
        assert_eq!(
            Net::parse(Family::V4, "10.0.0.0/255.0.255.0", "-s")
                .unwrap()
                .save(Family::V4),
            "10.0.0.0/255.0.255.0"
        );
        assert_eq!(
            Net::parse(Family::V6, "fd00::1/64", "-s")
                .unwrap()
                .save(Family::V6),
            "fd00::/64"
        );
        assert!(Net::parse(Family::V4, "example.com", "-s").is_err());
        assert!(Net::parse(Family::V4, "1.2.3.4/33", "-s").is_err());
        assert!(n.contains(Addr::v4([10, 9, 9, 9])));
        assert!(!n.contains(Addr::v4([11, 0, 0, 0])));
    }
}
