//! The fast path: a packet of an IPv4/UDP connection already in the table, tracked from
//! its bytes read in place ([`Udp4`]), without the general path's parsed datagram, its
//! checks for every protocol, and its tuple comparisons of either family.
//!
//! It decides only what it can decide as the general path would, with the same effects;
//! anything else (a new connection, a bad checksum, a template in force, an entry NAT
//! translated or with a timeout policy) is left untouched to the general path. A proptest
//! holds the two to each other, packet by packet, on tables of every kind.

use super::{Conntrack, CtRef, Hook, InResult};
use crate::conn::Conn;
use crate::proto::{udp, ProtoState, Verdict};
use crate::status::{ipct, ips, CtInfo, PacketState};
use crate::table::Found;
use ctrack_packet::Udp4;

impl Conntrack {
    /// [`Conntrack::conntrack_in`] of an IPv4/UDP datagram of a connection in the table:
    /// the same result and the same effects. `None`, having changed nothing, where the
    /// general path must decide; then call [`Conntrack::conntrack_in`] with the datagram
    /// parsed.
    #[inline]
    pub fn conntrack_in_udp4(&mut self, u: &Udp4<'_>, hook: Hook, now: u64) -> Option<InResult> {
        self.conntrack_in_udp4_hashed(u, hook, now, None)
    }

    /// [`Conntrack::conntrack_in_udp4`], given the hash of the datagram's tuple in zone 0
    /// if a batch's first pass made it.
    #[inline(always)]
    pub(super) fn conntrack_in_udp4_hashed(
        &mut self,
        u: &Udp4<'_>,
        hook: Hook,
        now: u64,
        hash: Option<u32>,
    ) -> Option<InResult> {
        // A template's zone or the host's answer to a packet it dropped change the lookup.
        if self.templated || (hook == Hook::LocalOut && self.last_discarded.is_some()) {
            return None;
        }
        let hash = hash.unwrap_or_else(|| self.table.hash_udp4(u.ends()));
        debug_assert_eq!(hash, self.table.hash(&u.tuple(), 0), "the fast path's hash");
        let Found::At(idx, dir) = self.table.find_udp4(u, hash) else {
            return None;
        };
        // Checked once the connection is found: a new one's packet is checked on the
        // general path, and only once.
        if self.settings.checksum && hook == Hook::PreRouting && !u.checksum_ok() {
            return None;
        }
        let c = self.table.get_mut(idx);
        // Rare values may hold a timeout policy.
        let (ProtoState::Udp(state), Conn::NO_RARE) = (c.proto, c.rare) else {
            return None;
        };
        let (seen_reply, assured) = (c.seen_reply(), c.assured());
        let (Verdict::Accept { timeout }, assure) = udp::packet(
            &state,
            seen_reply,
            assured,
            now,
            udp::Timeouts::udp(&self.settings),
        ) else {
            return None;
        };
        let ctinfo = if dir == 1 {
            CtInfo::EstablishedReply
        } else if seen_reply {
            CtInfo::Established
        } else if c.has(ips::EXPECTED) {
            CtInfo::Related
        } else {
            CtInfo::New
        };
        // Decided: from here on, what the general path does to a packet so decided.
        let deadline = c.deadline;
        if !c.has(ips::FIXED_TIMEOUT) {
            c.deadline = now + timeout;
        }
        if assure && !assured {
            c.status |= ips::ASSURED;
            c.events |= ipct::ASSURED;
        }
        if dir == 1 && !seen_reply {
            c.status |= ips::SEEN_REPLY;
            c.events |= ipct::REPLY;
        }
        let (refreshed, extras) = (c.deadline, c.extras);
        if refreshed < deadline {
            self.timers.set_at_most(idx, refreshed);
        }
        if self.settings.acct {
            if let Some(x) = self.extras.get_mut(extras) {
                x.counters[dir].packets += 1;
                x.counters[dir].bytes += u64::from(u.len());
            }
        }
        self.pending = None;
        Some(InResult {
            state: PacketState::Tracked(ctinfo),
            ct: Some(CtRef::Confirmed(idx)),
            drop: None,
            invalid: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Template, TimeoutName};
    use crate::nat::{Manip, NatRange};
    use crate::timeout::TimeoutPolicy;
    use crate::Settings;
    use ctrack_packet::{checksum, Addr, Datagram, Family};
    use proptest::prelude::*;

    const HOSTS: [[u8; 4]; 3] = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
    const PORTS: [u16; 3] = [53, 1000, 1001];
    const SECOND: u64 = 1_000_000_000;

    /// An IPv4/UDP datagram, its UDP checksum right, none (0), or wrong.
    fn datagram(from: usize, to: usize, sport: usize, dport: usize, sum: u8) -> Vec<u8> {
        let (src, dst) = (HOSTS[from], HOSTS[to]);
        let mut b = vec![0u8; 20 + 8 + 3];
        let total = b.len() as u16;
        b[0] = 0x45;
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b[8] = 64;
        b[9] = 17;
        b[12..16].copy_from_slice(&src);
        b[16..20].copy_from_slice(&dst);
        let c = checksum::finish(checksum::sum(&b[..20], 0));
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b[20..22].copy_from_slice(&PORTS[sport].to_be_bytes());
        b[22..24].copy_from_slice(&PORTS[dport].to_be_bytes());
        b[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        b[28..].copy_from_slice(b"abc");
        if sum != 1 {
            let acc = checksum::pseudo_header(
                Family::V4,
                Addr::v4(src),
                Addr::v4(dst),
                17,
                u32::from(total - 20),
            );
            let c = checksum::finish(checksum::sum(&b[20..], acc)) ^ u16::from(sum == 2);
            b[26..28].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    #[derive(Clone, Debug)]
    enum Op {
        Packet {
            ends: (usize, usize, usize, usize),
            sum: u8,
            local_out: bool,
            /// 0: none; 1: zone 1; 2: zone 0 and the timeout policy.
            template: u8,
            snat: bool,
            confirm: bool,
        },
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => ((0usize..3, 0usize..3, 0usize..3, 0usize..3), 0u8..4, any::<bool>(), 0u8..5,
                  any::<bool>(), any::<bool>())
                .prop_map(|(ends, sum, local_out, template, snat, confirm)| Op::Packet {
                    ends,
                    sum: [0, 0, 1, 2][usize::from(sum)],
                    local_out: local_out && sum == 0,
                    template: [0, 0, 0, 1, 2][usize::from(template)],
                    snat,
                    confirm: confirm || sum != 0,
                }),
            1 => (0u64..200).prop_map(|s| Op::Wait(s * SECOND / 2)),
        ]
    }

    fn tracker(settings: &Settings) -> Conntrack {
        let mut ct = Conntrack::new(settings.clone(), 7);
        ct.record_events(true);
        let mut policy = settings.clone();
        policy.udp_timeout = 5 * SECOND;
        ct.set_timeout_policies(vec![TimeoutPolicy {
            name: TimeoutName::new("short").expect("a name"),
            family: Family::V4,
            proto: 17,
            settings: policy,
        }]);
        ct
    }

    fn listing(ct: &Conntrack) -> Vec<(Conn, ctrack_packet::Tuple, crate::Extras)> {
        ct.listing().map(|(c, r, x)| (*c, r, x)).collect()
    }

    fn events(ct: &mut Conntrack) -> Vec<String> {
        ct.take_events()
            .iter()
            .map(|e| format!("{} {}", e.time, crate::format::event_line(e, true)))
            .collect()
    }

    /// Runs the operations through a tracker taking the general path only and one taking
    /// the fast path first; returns how many packets the fast path took.
    fn run_both(settings: Settings, ops: &[Op]) -> Result<usize, TestCaseError> {
        let (mut general, mut fast) = (tracker(&settings), tracker(&settings));
        let (mut now, mut taken) = (SECOND, 0);
        let snat = NatRange {
            // One of the hosts: its replies are among the packets sent.
            addrs: Some((Addr::v4(HOSTS[2]), Addr::v4(HOSTS[2]))),
            ports: None,
            random: false,
            persistent: false,
        };
        for op in ops {
            let Op::Packet {
                ends: (from, to, sport, dport),
                sum,
                local_out,
                template,
                snat: translate,
                confirm,
            } = *op
            else {
                if let Op::Wait(dt) = op {
                    now += dt;
                }
                continue;
            };
            general.expire(now);
            fast.expire(now);
            let bytes = datagram(from, to, sport, dport, sum);
            let d = Datagram::parse(&bytes).expect("a well-formed datagram");
            let hook = if local_out {
                Hook::LocalOut
            } else {
                Hook::PreRouting
            };
            let tmpl = match template {
                1 => Some(Template {
                    zone: 1,
                    ..Template::default()
                }),
                2 => Some(Template {
                    timeout: TimeoutName::new("short"),
                    ..Template::default()
                }),
                _ => None,
            };
            let a = general.conntrack_in_with(&d, hook, now, tmpl.as_ref());
            let fast_path = match tmpl {
                None => Udp4::parse(&bytes).and_then(|u| fast.conntrack_in_udp4(&u, hook, now)),
                Some(_) => None,
            };
            taken += usize::from(fast_path.is_some());
            let b =
                fast_path.unwrap_or_else(|| fast.conntrack_in_with(&d, hook, now, tmpl.as_ref()));
            prop_assert_eq!(a, b, "{:?} at {}", op, now);
            for (ct, r) in [(&mut general, a), (&mut fast, b)] {
                if let (true, Some(c)) = (translate, r.ct) {
                    ct.nat_setup(c, Manip::Src, &snat);
                }
                if confirm && r.drop.is_none() {
                    ct.confirm(&r, now);
                } else {
                    ct.discard(&r);
                }
            }
            prop_assert_eq!(listing(&general), listing(&fast));
            prop_assert_eq!(events(&mut general), events(&mut fast));
        }
        prop_assert_eq!(general.stats(), fast.stats());
        Ok(taken)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Packet by packet, the fast path decides as the general one and leaves the same
        /// table, events and counters, whatever else is in the table: replies, NAT,
        /// templates, timeout policies, expiry, bad checksums, dropped packets.
        #[test]
        fn the_fast_path_decides_as_the_general_one(
            ops in proptest::collection::vec(op(), 1..60),
            checksum in any::<bool>(),
            acct in any::<bool>(),
        ) {
            let settings = Settings { checksum, acct, ..Settings::default() };
            run_both(settings, &ops)?;
        }
    }

    #[test]
    fn a_known_flow_takes_the_fast_path_and_the_rest_does_not() {
        let packet = |from, to, sport, dport| Op::Packet {
            ends: (from, to, sport, dport),
            sum: 0,
            local_out: false,
            template: 0,
            snat: false,
            confirm: true,
        };
        // A request, its reply and one more each way: the last three are taken. A new flow
        // and a packet to itself are not.
        let ops = [
            packet(0, 1, 1, 0),
            packet(1, 0, 0, 1),
            packet(0, 1, 1, 0),
            packet(1, 0, 0, 1),
            packet(0, 2, 1, 0),
            packet(2, 2, 1, 0),
        ];
        let taken = run_both(Settings::default(), &ops).expect("the same");
        assert_eq!(taken, 3);
    }
}
