//! Addresses of either family in one fixed-size value, so tuples hash and compare fast.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The layer-3 family, numbered as Linux numbers it (`AF_INET` 2, `AF_INET6` 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The name conntrack prints (`ipv4`, `ipv6`).
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The family an IP datagram's version nibble names, if 4 or 6.
    pub fn of_datagram(bytes: &[u8]) -> Option<Family> {
        match bytes.first().map(|b| b >> 4) {
            Some(4) => Some(Family::V4),
            Some(6) => Some(Family::V6),
            _ => None,
        }
    }

    /// The number conntrack prints after the name (2 or 10).
    pub const fn number(self) -> u8 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }
}

/// An IPv4 or IPv6 address; an IPv4 address occupies the first four bytes, the rest zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// An IPv4 address.
    pub fn v4(octets: [u8; 4]) -> Addr {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&octets);
        Addr(a)
    }

    /// An IPv6 address.
    pub fn v6(octets: [u8; 16]) -> Addr {
        Addr(octets)
    }

    /// The standard-library address of the given family.
    pub fn to_ip(self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(self.0[0], self.0[1], self.0[2], self.0[3])),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.0)),
        }
    }

    /// From a standard-library address, with its family.
    pub fn from_ip(ip: IpAddr) -> (Addr, Family) {
        match ip {
            IpAddr::V4(v4) => (Addr::v4(v4.octets()), Family::V4),
            IpAddr::V6(v6) => (Addr::v6(v6.octets()), Family::V6),
        }
    }

    /// True for a loopback address of the family: `127.0.0.0/8` or `::1`.
    #[inline]
    pub fn is_loopback(self, family: Family) -> bool {
        match family {
            Family::V4 => self.0[0] == 127,
            Family::V6 => self.0 == Ipv6Addr::LOCALHOST.octets(),
        }
    }

    /// Formats the address as the kernel prints it (`%pI4`, `%pI6c`).
    pub fn display(self, family: Family) -> impl fmt::Display {
        self.to_ip(family)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0[4..].iter().all(|&b| b == 0) {
            write!(f, "{}", self.to_ip(Family::V4))
        } else {
            write!(f, "{}", self.to_ip(Family::V6))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_slash_8_and_ipv6_one() {
        let v4 = |s: &str| Addr::v4(s.parse::<Ipv4Addr>().expect("address").octets());
        let v6 = |s: &str| Addr::v6(s.parse::<Ipv6Addr>().expect("address").octets());
        assert!(v4("127.0.0.1").is_loopback(Family::V4));
        assert!(v4("127.255.0.9").is_loopback(Family::V4));
        assert!(!v4("128.0.0.1").is_loopback(Family::V4));
        assert!(v6("::1").is_loopback(Family::V6));
        assert!(!v6("::2").is_loopback(Family::V6));
        // 127.0.0.1's bytes read as IPv6 are not ::1.
        assert!(!v4("127.0.0.1").is_loopback(Family::V6));
    }
}
