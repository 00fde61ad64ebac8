//! A chain's rules boiled down to what a walk tests first: each rule's `-s`, `-d` and `-p`
//! as a few bytes of masks, in one flat array beside the rules.
//!
//! Most rules of most chains do not match most packets, and most of those are told apart by
//! their addresses or protocol. A walk tests these records in a tight loop, and runs a rule's
//! whole test only where its record lets the packet through. A record is a necessary
//! condition, never a sufficient one: what it leaves out (an inverted option, interfaces,
//! fragments, matches) the whole test still checks, so a walk with records decides exactly
//! what one without them decides. A rule with nothing else to test (`-s 10.0.0.0/8 -j DROP`,
//! `-j DOCKER-USER`) is decided by its record alone, and one that tests only the connection
//! state (`-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`) by its record and that
//! state.
//!
//! An IPv4 record holds both addresses in one 64-bit word, so that a rule is passed over in a
//! handful of instructions; an IPv6 record holds two 128-bit words.

use crate::matches::Match;
use crate::model::{FamilyRules, RuleSpec};
use crate::target::Target;
use ctrack_packet::{Addr, Datagram, Family};

/// The addresses of a packet, or the masks or masked values of a rule, in one word.
pub(crate) trait Key: Copy {
    /// Source and destination, side by side.
    fn of(src: Addr, dst: Addr) -> Self;
    /// `self & mask == want`.
    fn masked_eq(self, mask: Self, want: Self) -> bool;
}

/// IPv4: the source in the high half, the destination in the low one.
impl Key for u64 {
    fn of(src: Addr, dst: Addr) -> u64 {
        let word = |a: Addr| u64::from(u32::from_be_bytes([a.0[0], a.0[1], a.0[2], a.0[3]]));
        word(src) << 32 | word(dst)
    }
    #[inline(always)]
    fn masked_eq(self, mask: u64, want: u64) -> bool {
        self & mask == want
    }
}

/// IPv6: source, then destination.
impl Key for [u128; 2] {
    fn of(src: Addr, dst: Addr) -> [u128; 2] {
        [u128::from_ne_bytes(src.0), u128::from_ne_bytes(dst.0)]
    }
    #[inline(always)]
    fn masked_eq(self, mask: [u128; 2], want: [u128; 2]) -> bool {
        // Both halves at once, with no branch between them.
        ((self[0] & mask[0]) ^ want[0]) | ((self[1] & mask[1]) ^ want[1]) == 0
    }
}

/// One rule's record: the packet passes it when its addresses masked are `want` and its
/// protocol masked is `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record<K> {
    mask: K,
    want: K,
    proto_mask: u8,
    proto: u8,
    /// What is left to test of a packet the record admits.
    pub(crate) rest: Rest,
}

/// What a rule tests beyond its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// Nothing: what the record admits, the rule matches.
    Nothing,
    /// Only the connection state, as `-m state --state` (`nat` false) or
    /// `-m conntrack --ctstate` (`nat` true) with nothing else to test: `mask` the states,
    /// `inv` for `!`. The rule that opens nearly every stateful ruleset.
    State { mask: u16, inv: bool, nat: bool },
    /// The whole rule, options and matches; `varies` when it reads what may differ
    /// between the packets of a connection in one direction and state (a length, a mark,
    /// TCP flags, a rate: see `Match::same_for_a_flow`).
    Whole { varies: bool },
}

impl<K: Key> Record<K> {
    /// The record of a rule: its options a record can hold, the rest left to the whole test.
    fn of(spec: &RuleSpec) -> Record<K> {
        // An option a record holds plain goes into it; an inverted one, like the interfaces
        // and `-f`, is left for the whole test to decide.
        let mut whole = spec.iif.is_some() || spec.oif.is_some() || spec.frag.is_some();
        let none = (Addr::default(), Addr::default());
        let mut net = |n: &Option<(crate::addr::Net, bool)>| match n {
            Some((n, false)) => (n.mask, n.addr),
            Some((_, true)) => {
                whole = true;
                none
            }
            None => none,
        };
        let ((src_mask, src), (dst_mask, dst)) = (net(&spec.src), net(&spec.dst));
        let (proto_mask, proto) = match spec.proto {
            Some((p, false)) if p != 0 => (0xff, p),
            Some((p, true)) if p != 0 => {
                whole = true;
                (0, 0)
            }
            // `-p all` tests nothing, inverted or not, as the whole test has it.
            _ => (0, 0),
        };
        // The base options (addresses, interfaces from the host's routes, protocol,
        // fragments of a reassembled datagram) are the same for a connection's packets.
        let varies = !spec.matches.iter().all(Match::same_for_a_flow);
        let rest = match spec.matches.as_slice() {
            _ if whole => Rest::Whole { varies },
            [] | [Match::State(None)] => Rest::Nothing,
            [Match::State(Some((mask, inv)))] => Rest::State {
                mask: *mask,
                inv: *inv,
                nat: false,
            },
            [Match::Conntrack(c)] if c.tests_state_only() => match c.state {
                Some((mask, inv)) => Rest::State {
                    mask,
                    inv,
                    nat: true,
                },
                None => Rest::Nothing,
            },
            _ => Rest::Whole { varies },
        };
        Record {
            mask: K::of(src_mask, dst_mask),
            want: K::of(src, dst),
            proto_mask,
            proto,
            rest,
        }
    }

    /// True when a packet of these addresses (`key`) and protocol may match the rule.
    #[inline(always)]
    pub(crate) fn admits(&self, key: K, proto: u8) -> bool {
        key.masked_eq(self.mask, self.want) & (proto & self.proto_mask == self.proto)
    }
}

/// The records of one chain's rules, in the family's form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admits {
    /// An IPv4 chain's.
    V4(Vec<Record<u64>>),
    /// An IPv6 chain's.
    V6(Vec<Record<[u128; 2]>>),
}

/// What a walk knows of one chain before it tests a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainRecords {
    /// One record a rule.
    pub(crate) admits: Admits,
    /// The index of the chain each rule jumps or goes to, found once instead of by name at
    /// every jump; [`NO_CHAIN`] for a rule that does neither, or names no chain.
    jumps: Vec<usize>,
}

/// [`ChainRecords`]' mark of a rule that jumps nowhere.
const NO_CHAIN: usize = usize::MAX;

impl ChainRecords {
    /// The chain rule `rule` jumps or goes to.
    pub(crate) fn jump(&self, rule: usize) -> Option<usize> {
        self.jumps.get(rule).copied().filter(|&c| c != NO_CHAIN)
    }
}

/// The records of every chain of a family's tables, by table and chain index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Records {
    tables: Vec<Vec<ChainRecords>>,
}

impl Records {
    /// The records of `rules` as they are now.
    pub(crate) fn of(rules: &FamilyRules) -> Records {
        let chain = |t: &crate::model::Table, c: &crate::model::Chain| {
            let specs = c.rules.iter().map(|r| &r.spec);
            ChainRecords {
                admits: match rules.family {
                    Family::V4 => Admits::V4(specs.map(Record::of).collect()),
                    Family::V6 => Admits::V6(specs.map(Record::of).collect()),
                },
                jumps: c
                    .rules
                    .iter()
                    .map(|r| match &r.spec.target {
                        Target::Jump(name) | Target::Goto(name) => {
                            t.chain(name).unwrap_or(NO_CHAIN)
                        }
                        _ => NO_CHAIN,
                    })
                    .collect(),
            }
        };
        Records {
            tables: rules
                .tables
                .iter()
                .map(|t| t.chains.iter().map(|c| chain(t, c)).collect())
                .collect(),
        }
    }

    /// The records of the chains of table `table`, by chain index.
    pub(crate) fn table(&self, table: usize) -> &[ChainRecords] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }
}

/// The records of chain `chain` among a table's, if they are for `rules` rules: a chain
/// changed since the records were made is walked without them.
pub(crate) fn chain(table: &[ChainRecords], chain: usize, rules: usize) -> Option<&ChainRecords> {
    table.get(chain).filter(|r| r.jumps.len() == rules)
}

/// The packet's key for the records of its family.
pub(crate) fn key_v4(d: &Datagram<'_>) -> u64 {
    u64::of(d.src, d.dst)
}

/// The packet's key for the records of its family.
pub(crate) fn key_v6(d: &Datagram<'_>) -> [u128; 2] {
    <[u128; 2]>::of(d.src, d.dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Net;

    fn v4(a: [u8; 4]) -> Addr {
        Addr::v4(a)
    }

    fn net(a: [u8; 4], len: u32) -> Net {
        let mask = crate::addr::prefix_mask(Family::V4, len);
        Net {
            addr: crate::addr::masked(v4(a), mask),
            mask,
        }
    }

    fn spec(src: Option<(Net, bool)>, proto: Option<(u8, bool)>) -> RuleSpec {
        let mut s = RuleSpec::with_target(crate::target::Target::Accept);
        s.src = src;
        s.proto = proto;
        s
    }

    #[test]
    fn an_address_outside_the_source_net_is_turned_away() {
        let r = Record::<u64>::of(&spec(Some((net([192, 0, 2, 0], 24), false)), None));
        let key = |s| u64::of(v4(s), v4([10, 0, 0, 1]));
        assert!(r.admits(key([192, 0, 2, 77]), 17));
        assert!(!r.admits(key([192, 0, 3, 77]), 17));
    }

    #[test]
    fn the_protocol_is_tested_and_all_passes_every_protocol() {
        let udp = Record::<u64>::of(&spec(None, Some((17, false))));
        let all = Record::<u64>::of(&spec(None, Some((0, false))));
        let key = u64::of(v4([1, 2, 3, 4]), v4([5, 6, 7, 8]));
        assert!(udp.admits(key, 17));
        assert!(!udp.admits(key, 6));
        assert!(all.admits(key, 6));
    }

    #[test]
    fn inverted_options_are_left_to_the_whole_test() {
        let r = Record::<u64>::of(&spec(
            Some((net([192, 0, 2, 0], 24), true)),
            Some((17, true)),
        ));
        let key = u64::of(v4([192, 0, 2, 1]), v4([5, 6, 7, 8]));
        assert!(r.admits(key, 17));
        assert_eq!(r.rest, Rest::Whole { varies: false });
    }

    #[test]
    fn only_a_rule_of_addresses_protocol_and_state_is_decided_without_its_whole_test() {
        let rest = |s: &RuleSpec| Record::<u64>::of(s).rest;
        let plain = spec(Some((net([10, 0, 0, 0], 8), false)), Some((6, false)));
        assert_eq!(rest(&plain), Rest::Nothing);
        assert_eq!(
            rest(&spec(None, Some((0, true)))),
            Rest::Nothing,
            "! -p all is no test at all, as the whole test has it"
        );
        let mut state = spec(None, None);
        state.matches.push(Match::State(Some((0b1100, false))));
        assert_eq!(
            rest(&state),
            Rest::State {
                mask: 0b1100,
                inv: false,
                nat: false
            }
        );
        let mut ctstate = spec(None, None);
        let mut c = crate::matches::ConntrackMatch {
            state: Some((0b1000, true)),
            ..Default::default()
        };
        ctstate.matches.push(Match::Conntrack(Box::new(c.clone())));
        assert_eq!(
            rest(&ctstate),
            Rest::State {
                mask: 0b1000,
                inv: true,
                nat: true
            }
        );
        c.dir = Some(true);
        ctstate.matches[0] = Match::Conntrack(Box::new(c.clone()));
        assert_eq!(rest(&ctstate), Rest::Whole { varies: false });
        // The connection's status changes over its life (ASSURED).
        c.status = Some((ctrack_conntrack::status::ips::ASSURED, false));
        ctstate.matches[0] = Match::Conntrack(Box::new(c));
        assert_eq!(rest(&ctstate), Rest::Whole { varies: true });
        let mut with_match = spec(None, None);
        with_match.matches.push(Match::Comment(Some("x".into())));
        assert_eq!(rest(&with_match), Rest::Whole { varies: false });
        with_match
            .matches
            .push(Match::Length(Some((0, 100, false))));
        assert_eq!(rest(&with_match), Rest::Whole { varies: true });
        let mut with_iface = spec(None, None);
        with_iface.iif = Some(("eth0".into(), false));
        assert_eq!(rest(&with_iface), Rest::Whole { varies: false });
        let mut flags = spec(None, Some((6, false)));
        flags.matches.push(Match::Tcp {
            sport: None,
            dport: Some(crate::matches::Ports {
                lo: 22,
                hi: 22,
                inv: false,
            }),
            flags: None,
            option: None,
        });
        assert_eq!(rest(&flags), Rest::Whole { varies: false });
        flags.matches[0] = Match::Tcp {
            sport: None,
            dport: None,
            flags: Some((0x17, 0x02, false)),
            option: None,
        };
        assert_eq!(rest(&flags), Rest::Whole { varies: true });
    }

    #[test]
    fn ipv6_tests_both_addresses() {
        let a = |last| Addr::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        let full = crate::addr::prefix_mask(Family::V6, 128);
        let mut s = spec(None, None);
        s.dst = Some((
            Net {
                addr: a(9),
                mask: full,
            },
            false,
        ));
        let r = Record::<[u128; 2]>::of(&s);
        assert!(r.admits(<[u128; 2]>::of(a(1), a(9)), 6));
        assert!(!r.admits(<[u128; 2]>::of(a(1), a(8)), 6));
    }
}
