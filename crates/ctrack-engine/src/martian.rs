//! Addresses a host refuses on a packet that came in on an interface other than `lo`.
//!
//! IPv4's routing decision calls them martians (`ip_route_input_slow`): it runs after
//! PREROUTING, on the addresses DNAT left, so conntrack has met the packet, but the
//! connection it began is never confirmed. IPv6 drops such packets on receipt
//! (`ip6_rcv_core`), before netfilter sees them at all. Loopback addresses are the common
//! case: a capture taken on `lo` and put on the wire.
//!
//! Not modelled: multicast destinations (their own checks, in `ip_route_input_mc`), the
//! source's validation against the routes (`fib_validate_source`: `rp_filter`, a source
//! that is one of the host's own addresses, which `accept_local` allows), and
//! `net.ipv4.conf.*.route_localnet`, taken as 0, its default.

use ctrack_packet::Addr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why IPv4's routing refuses a packet from `src` to `dst` that came in from the wire, in
/// the kernel's words; `None` when it routes it.
pub(crate) fn ipv4_route_refuses(src: Addr, dst: Addr) -> Option<&'static str> {
    let four = |a: Addr| Ipv4Addr::new(a.0[0], a.0[1], a.0[2], a.0[3]);
    let (src, dst) = (four(src), four(dst));
    const SOURCE: Option<&str> = Some("martian source");
    const DESTINATION: Option<&str> = Some("martian destination");
    if dst.is_multicast() {
        return None;
    }
    if src.is_multicast() || src.is_broadcast() {
        return SOURCE;
    }
    // Limited broadcast, and all zeroes to all zeroes, are taken as broadcast (whose source
    // is validated against the routes, which is not modelled).
    if dst.is_broadcast() || (src.is_unspecified() && dst.is_unspecified()) {
        return None;
    }
    if src.octets()[0] == 0 {
        return SOURCE;
    }
    if dst.octets()[0] == 0 || dst.is_loopback() {
        return DESTINATION;
    }
    if src.is_loopback() {
        return SOURCE;
    }
    None
}

/// Why IPv6 drops a packet from `src` to `dst` received on an interface other than `lo`,
/// before PREROUTING; `None` when it takes it.
pub(crate) fn ipv6_receive_refuses(src: Addr, dst: Addr) -> Option<&'static str> {
    let (src, dst) = (Ipv6Addr::from(src.0), Ipv6Addr::from(dst.0));
    if src.is_loopback() || dst.is_loopback() {
        return Some("loopback address");
    }
    // The scope is the low nibble of a multicast address's second byte: 0 is reserved, 1 is
    // interface-local, for loopback alone.
    if dst.is_multicast() && dst.octets()[1] & 0x0f <= 1 {
        return Some("multicast destination scope");
    }
    if src.is_multicast() {
        return Some("multicast source");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Addr {
        Addr::v4(s.parse::<Ipv4Addr>().expect("address").octets())
    }
    fn v6(s: &str) -> Addr {
        Addr::v6(s.parse::<Ipv6Addr>().expect("address").octets())
    }

    #[test]
    fn ipv4_martians_are_the_kernels() {
        let r = |s, d| ipv4_route_refuses(v4(s), v4(d));
        assert_eq!(r("10.0.0.1", "10.0.0.2"), None);
        assert_eq!(r("127.0.0.1", "127.0.0.1"), Some("martian destination"));
        assert_eq!(r("10.0.0.1", "127.1.2.3"), Some("martian destination"));
        assert_eq!(r("127.0.0.1", "10.0.0.2"), Some("martian source"));
        assert_eq!(r("0.1.2.3", "10.0.0.2"), Some("martian source"));
        assert_eq!(r("10.0.0.1", "0.0.0.7"), Some("martian destination"));
        assert_eq!(r("224.0.0.1", "10.0.0.2"), Some("martian source"));
        assert_eq!(r("255.255.255.255", "10.0.0.2"), Some("martian source"));
        // DHCP's discover is taken as broadcast.
        assert_eq!(r("0.0.0.0", "255.255.255.255"), None);
        assert_eq!(r("0.0.0.0", "0.0.0.0"), None);
    }

    #[test]
    fn ipv6_refusals_are_the_kernels() {
        let r = |s, d| ipv6_receive_refuses(v6(s), v6(d));
        assert_eq!(r("2001:db8::1", "2001:db8::2"), None);
        assert_eq!(r("::1", "::1"), Some("loopback address"));
        assert_eq!(r("2001:db8::1", "::1"), Some("loopback address"));
        assert_eq!(r("::1", "2001:db8::2"), Some("loopback address"));
        assert_eq!(
            r("2001:db8::1", "ff01::1"),
            Some("multicast destination scope")
        );
        assert_eq!(
            r("2001:db8::1", "ff00::1"),
            Some("multicast destination scope")
        );
        assert_eq!(r("2001:db8::1", "ff02::1"), None);
        assert_eq!(r("ff02::1", "2001:db8::2"), Some("multicast source"));
    }
}
