//! ICMP and ICMPv6: query/reply pairs are connections; errors belong to the connection of
//! the packet they quote (RELATED), which the core resolves.

use super::Verdict;
use crate::Settings;
use ctrack_packet::Family;

/// Highest ICMP type the kernel accepts (`NR_ICMP_TYPES`).
pub const NR_ICMP_TYPES: u8 = 18;

/// ICMPv6 neighbour discovery and multicast listener types are never tracked
/// (`noct_valid_new`): they get the UNTRACKED state.
pub fn is_untracked_v6(ty: u8) -> bool {
    matches!(ty, 130..=136 | 143 | 151 | 152)
}

/// Error messages that quote a packet: destination unreachable, source quench, time
/// exceeded, parameter problem and redirect for IPv4; types below 128 and redirect (137)
/// for IPv6.
pub fn is_error(family: Family, ty: u8) -> bool {
    match family {
        Family::V4 => matches!(ty, 3 | 4 | 5 | 11 | 12),
        Family::V6 => ty < 128 || ty == 137,
    }
}

/// Only queries may start a connection: echo, timestamp, information and address mask
/// requests; echo request and node information query for IPv6.
pub fn valid_new(family: Family, ty: u8) -> bool {
    match family {
        Family::V4 => matches!(ty, 8 | 13 | 15 | 17),
        Family::V6 => matches!(ty, 128 | 139),
    }
}

/// The tracker's decision for a query or reply.
pub fn packet(family: Family, ty: u8, confirmed: bool, s: &Settings) -> Verdict {
    if !confirmed && !valid_new(family, ty) {
        return Verdict::Invalid("invalid new");
    }
    Verdict::Accept {
        timeout: match family {
            Family::V4 => s.icmp_timeout,
            Family::V6 => s.icmpv6_timeout,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_start_connections() {
        let s = Settings::default();
        assert!(matches!(
            packet(Family::V4, 8, false, &s),
            Verdict::Accept { .. }
        ));
        assert_eq!(
            packet(Family::V4, 0, false, &s),
            Verdict::Invalid("invalid new")
        );
        assert!(matches!(
            packet(Family::V4, 0, true, &s),
            Verdict::Accept { .. }
        ));
        assert!(matches!(
            packet(Family::V6, 128, false, &s),
            Verdict::Accept { .. }
        ));
        assert_eq!(
            packet(Family::V6, 129, false, &s),
            Verdict::Invalid("invalid new")
        );
    }

    #[test]
    fn classifies_errors_and_untracked() {
        assert!(is_error(Family::V4, 3) && is_error(Family::V4, 11));
        assert!(!is_error(Family::V4, 8));
        assert!(is_error(Family::V6, 2) && !is_error(Family::V6, 128));
        assert!(is_untracked_v6(135) && !is_untracked_v6(128));
    }
}
