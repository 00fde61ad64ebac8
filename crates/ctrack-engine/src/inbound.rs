//! What a host makes of a packet's addresses when it came in on an interface other than
//! `lo`.
//!
//! IPv4's routing decision drops martians (`ip_route_input_slow`): it runs after
//! PREROUTING, on the addresses DNAT left, so conntrack has met the packet, but the
//! connection it began is never confirmed. IPv6 drops such packets on receipt
//! (`ip6_rcv_core`), before netfilter sees them at all. Loopback addresses are the common
//! case: a capture taken on `lo` and put on the wire. A multicast datagram is taken in
//! when the host is a member of its group and dropped by the routing decision otherwise:
//! the host routes no multicast.
//!
//! Not modelled: the source's validation against the routes (`fib_validate_source`:
//! `rp_filter`, a source that is one of the host's own addresses, which `accept_local`
//! allows; the same for multicast), groups that programs join, and
//! `net.ipv4.conf.*.route_localnet`, taken as 0, its default.

use crate::Host;
use ctrack_packet::{Addr, Family};
use std::net::{Ipv4Addr, Ipv6Addr};

/// True for an IPv4 address whose first byte puts it out of reach of every check of
/// [`ipv4_route_refuses`] and of the multicast and broadcast cases: not 0 or 127, and below
/// 224. `Host::route_input` settles packets between two such addresses without those
/// checks.
#[inline(always)]
pub(crate) fn plain_v4(a: Addr) -> bool {
    a.0[0] != 0 && a.0[0] != 127 && a.0[0] < 224
}

/// Why IPv4's routing refuses a packet from `src` to `dst` that came in from the wire, in
/// the kernel's words; `None` when it routes it.
pub(crate) fn ipv4_route_refuses(src: Addr, dst: Addr) -> Option<&'static str> {
    let four = |a: Addr| Ipv4Addr::new(a.0[0], a.0[1], a.0[2], a.0[3]);
    let (src, dst) = (four(src), four(dst));
    const SOURCE: Option<&str> = Some("martian source");
    const DESTINATION: Option<&str> = Some("martian destination");
    if dst.is_multicast() {
        // `ip_mc_validate_source`, for a group the host is a member of (it drops the others
        // first); a zero source may only speak to the link's own groups.
        let zero_off_link = src.is_unspecified() && dst.octets()[..3] != [224, 0, 0];
        let bad = src.is_multicast() || src.is_broadcast() || src.is_loopback() || zero_off_link;
        return if bad { SOURCE } else { None };
    }
    if src.is_multicast() || src.is_broadcast() {
        return SOURCE;
    }
    // Limited broadcast, and all zeroes to all zeroes, are taken as broadcast (whose source
    // is validated against the routes, which is not modelled).
    if dst.is_broadcast() || (src.is_unspecified() && dst.is_unspecified()) {
        return None;
    }
    // The kernel's "zero network" is 0.0.0.0 alone since 0.0.0.0/8 became unicast
    // (Linux 5.3); the harness's kernel routes 0.1.2.3.
    if src.is_unspecified() {
        return SOURCE;
    }
    if dst.is_unspecified() || dst.is_loopback() {
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

/// True when the host is a member of the multicast `group` on its interfaces, as every
/// Linux host is without being asked: all hosts (`224.0.0.1`); all nodes (`ff02::1`), all
/// routers (`ff02::2`, `ff05::2`: the host forwards) and the solicited-node group of each
/// of its IPv6 addresses (`ff02::1:ffXX:XXXX`, the address's last 24 bits). Groups that
/// programs join (mDNS, SSDP) are not known from a capture.
pub(crate) fn joined(host: &Host, group: Addr, family: Family) -> bool {
    match family {
        Family::V4 => group.0[..4] == [224, 0, 0, 1],
        Family::V6 => {
            let g = Ipv6Addr::from(group.0).segments();
            let link_or_site = g[0] == 0xff02 || g[0] == 0xff05;
            let solicited = group.0[..13] == SOLICITED_NODE;
            (g[0] == 0xff02 && g[1..7] == [0; 6] && g[7] == 1)
                || (link_or_site && g[1..7] == [0; 6] && g[7] == 2)
                || (solicited
                    && host
                        .locals()
                        .iter()
                        .any(|(a, f)| *f == Family::V6 && a.0[13..] == group.0[13..]))
        }
    }
}

/// `ff02::1:ff00:0/104`, the solicited-node groups.
const SOLICITED_NODE: [u8; 13] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];

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
        assert_eq!(r("0.0.0.0", "10.0.0.2"), Some("martian source"));
        assert_eq!(r("10.0.0.1", "0.0.0.0"), Some("martian destination"));
        assert_eq!(r("0.1.2.3", "10.0.0.2"), None);
        assert_eq!(r("10.0.0.1", "0.0.0.7"), None);
        assert_eq!(r("224.0.0.1", "10.0.0.2"), Some("martian source"));
        assert_eq!(r("255.255.255.255", "10.0.0.2"), Some("martian source"));
        // DHCP's discover is taken as broadcast.
        assert_eq!(r("0.0.0.0", "255.255.255.255"), None);
        assert_eq!(r("0.0.0.0", "0.0.0.0"), None);
        assert_eq!(r("10.0.0.1", "224.0.0.1"), None);
        assert_eq!(r("127.0.0.1", "224.0.0.1"), Some("martian source"));
        assert_eq!(r("0.0.0.0", "224.0.0.1"), None);
        assert_eq!(r("0.0.0.0", "239.1.2.3"), Some("martian source"));
        assert_eq!(r("0.1.2.3", "239.1.2.3"), None);
    }

    #[test]
    fn the_groups_a_host_joins_by_itself() {
        let host = Host::new(vec![(v6("fd77:1::1:2:3"), Family::V6)]);
        let j4 = |g| joined(&host, v4(g), Family::V4);
        let j6 = |g| joined(&host, v6(g), Family::V6);
        assert!(j4("224.0.0.1"));
        assert!(!j4("224.0.0.2") && !j4("224.0.0.251") && !j4("239.255.255.250"));
        assert!(j6("ff02::1") && j6("ff02::2") && j6("ff05::2"));
        assert!(!j6("ff05::1") && !j6("ff02::fb") && !j6("ff0e::1") && !j6("ff02::1:3"));
        // The solicited-node group of fd77:1::1:2:3, and not of another address.
        assert!(j6("ff02::1:ff02:3"));
        assert!(!j6("ff02::1:ff02:4") && !j6("ff05::1:ff02:3"));
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
