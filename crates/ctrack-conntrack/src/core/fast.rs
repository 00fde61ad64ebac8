//! The fast path: an IPv4/UDP packet tracked from its bytes read in place ([`Udp4`]),
//! without the general path's parsed datagram, its checks for every protocol, and its tuple
//! comparisons of either family. A packet of a connection already in the table updates it;
//! the first packet of a new connection makes it pending, with the hash and the miss of the
//! one lookup.
//!
//! It decides only what it can decide as the general path would, with the same effects;
//! anything else (a bad checksum, a template in force, an entry NAT translated or with a
//! timeout policy, a new connection an expectation may make RELATED or that early drop
//! must make room for) is left untouched to the general path. A proptest holds the two to
//! each other, packet by packet, on tables of every kind.

use super::{Conntrack, CtRef, Hook, InResult, Pending, Prefetched};
use crate::conn::{Conn, Extras, Rare};
use crate::proto::{udp, ProtoState, Verdict};
use crate::status::{ipct, ips, CtInfo, PacketState};
use crate::table::Found;
use ctrack_packet::{Tuple, Udp4};

/// The hash of an IPv4/UDP datagram's tuple, made ahead by
/// [`Conntrack::prefetch_udp4_x4`]. It borrows the datagram's bytes, so that they cannot
/// change while it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp4Hash<'a> {
    /// Where the datagram's bytes are and how many: the hash serves that datagram only.
    bytes: (usize, usize),
    hash: u32,
    datagram: std::marker::PhantomData<&'a [u8]>,
}

impl Udp4Hash<'_> {
    /// The hash, if it was made of this datagram.
    #[inline(always)]
    fn of(&self, u: &Udp4<'_>) -> Option<u32> {
        (self.bytes == place_of(u)).then_some(self.hash)
    }
}

/// Where a datagram's bytes are and how many.
pub(super) fn place_of(u: &Udp4<'_>) -> (usize, usize) {
    super::place_of_bytes(u.bytes())
}

impl Conntrack {
    /// [`Conntrack::conntrack_in`] of an IPv4/UDP datagram of a connection in the table: the
    /// same result and the same effects. `Err`, having changed nothing, for any other: give
    /// the [`Prefetched`] to [`Conntrack::conntrack_in_udp4_new`], which makes a new
    /// connection without looking it up again, or the datagram parsed and the [`Prefetched`]
    /// to [`Conntrack::conntrack_in_prefetched`], which does not hash it again and tries
    /// the new connection first.
    #[inline]
    pub fn conntrack_in_udp4<'a>(
        &mut self,
        u: &Udp4<'a>,
        hook: Hook,
        now: u64,
    ) -> Result<InResult, Prefetched<'a>> {
        self.udp4_in::<false>(u, hook, now, None)
    }

    /// The hashes of four IPv4/UDP datagrams' tuples, made at once (in the lanes of AVX2
    /// registers where the CPU has them), their index slots asked for, for
    /// [`Conntrack::conntrack_in_udp4_prefetched`].
    #[inline(always)]
    pub fn prefetch_udp4_x4<'a>(&self, us: [&Udp4<'a>; 4]) -> [Udp4Hash<'a>; 4] {
        let hashes = self.table.hash_udp4_x4(us.map(Udp4::ends));
        std::array::from_fn(|i| {
            self.table.prefetch_slot(hashes[i]);
            Udp4Hash {
                bytes: place_of(us[i]),
                hash: hashes[i],
                datagram: std::marker::PhantomData,
            }
        })
    }

    /// The entry the index names first for a hash [`Conntrack::prefetch_udp4_x4`] made,
    /// asked for (its slot should be cached by then).
    pub fn prefetch_entry_udp4(&self, h: &Udp4Hash<'_>) {
        self.table.prefetch_entry(h.hash);
    }

    /// [`Conntrack::conntrack_in_udp4`] of a datagram [`Conntrack::prefetch_udp4_x4`] saw,
    /// its hash not made again (given another datagram than the one `h` was made of, the
    /// hash is made anew).
    #[inline]
    pub fn conntrack_in_udp4_prefetched<'a>(
        &mut self,
        u: &Udp4<'a>,
        hook: Hook,
        now: u64,
        h: &Udp4Hash<'a>,
    ) -> Result<InResult, Prefetched<'a>> {
        self.udp4_in::<false>(u, hook, now, h.of(u))
    }

    /// [`Conntrack::conntrack_in_udp4_prefetched`] and then [`Conntrack::confirm`] of the
    /// result, as a datapath that tracks and commits at once (nothing between the two to
    /// change the connection): the same effects, the events delivered with the connection
    /// at hand instead of found again. An `Ok` result is confirmed already; an `Err` has
    /// changed nothing, as there.
    #[inline]
    pub fn conntrack_in_udp4_committed<'a>(
        &mut self,
        u: &Udp4<'a>,
        hook: Hook,
        now: u64,
        h: &Udp4Hash<'a>,
    ) -> Result<InResult, Prefetched<'a>> {
        self.udp4_in::<true>(u, hook, now, h.of(u))
    }

    /// The fast path, given the hash of the datagram's tuple in zone 0 if it was made
    /// already; with `COMMIT`, the packet confirmed too.
    #[inline(always)]
    pub(super) fn udp4_in<'a, const COMMIT: bool>(
        &mut self,
        u: &Udp4<'a>,
        hook: Hook,
        now: u64,
        hash: Option<u32>,
    ) -> Result<InResult, Prefetched<'a>> {
        let hash = hash.unwrap_or_else(|| self.table.hash_udp4(u.ends()));
        let general = || Err(Prefetched::of_udp4(u, hash, None));
        if self.lookup_takes_more_than_the_tuple(hook) {
            return general();
        }
        let verify = self.verifies_checksum(hook);
        let (idx, dir, c) = match self.table.find_udp4(u, hash) {
            Found::At(idx, dir, c) => (idx, dir, c),
            Found::Missing => {
                let absent = Some(self.table.generation());
                return Err(Prefetched::of_udp4(u, hash, absent));
            }
            Found::Unsure => return general(),
        };
        // Checked once the lookup has told: a packet the general path is to decide is
        // checked there, and only once.
        if verify && !u.checksum_ok() {
            return general();
        }
        // Rare values may hold a timeout policy.
        let (ProtoState::Udp(state), Conn::NO_RARE) = (c.proto, c.rare) else {
            return general();
        };
        let (seen_reply, assured) = (c.seen_reply(), c.assured());
        let (Verdict::Accept { timeout }, assure) = udp::packet(
            &state,
            seen_reply,
            assured,
            now,
            udp::Timeouts::udp(&self.settings),
        ) else {
            return general();
        };
        let ctinfo = super::ctinfo_of(c, dir);
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
        let events = if COMMIT {
            std::mem::take(&mut c.events)
        } else {
            0
        };
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
        if events & super::UPDATE_EVENTS != 0 {
            self.emit_update(idx, now, events);
        }
        Ok(InResult {
            state: PacketState::Tracked(ctinfo),
            ct: Some(CtRef::Confirmed(idx)),
            drop: None,
            invalid: None,
        })
    }

    /// [`Conntrack::conntrack_in`] of an IPv4/UDP datagram the fast path left with
    /// `missed` having found no connection of it: the first packet of a new connection,
    /// its connection made pending as the general path makes it, without the general
    /// path's second lookup and its checks for every protocol. `Err(missed)`, having
    /// changed nothing, where the general path must decide: `missed` made of another
    /// datagram, or not by a lookup that found nothing, or the table has made an entry
    /// since; a template in force, the host's answer to a packet it dropped, a bad
    /// checksum, an expectation that may make it RELATED, a full table where early drop
    /// decides. [`Conntrack::conntrack_in_prefetched`] tries it first with such a `missed`.
    // Out of line and cold: apart from the lookups' loops, which are laid out without it.
    #[cold]
    #[inline(never)]
    pub fn conntrack_in_udp4_new<'a>(
        &mut self,
        u: &Udp4<'a>,
        hook: Hook,
        now: u64,
        missed: &Prefetched<'a>,
    ) -> Result<InResult, Prefetched<'a>> {
        let general = || Err(*missed);
        let h = &missed.hint;
        if h.absent_while != Some(self.table.generation())
            || h.bytes != place_of(u)
            || self.lookup_takes_more_than_the_tuple(hook)
            || !self.expectations.is_empty()
            || self.table_full()
            || (self.verifies_checksum(hook) && !u.checksum_ok())
        {
            return general();
        }
        let original = u.tuple();
        // UDP's inverse swaps the ends. Made here, not by `Tuple::invert` out of line: its
        // result was read back whole from where it had just been written in parts.
        let reply = Tuple {
            src: original.dst,
            dst: original.src,
            src_port: original.dst_port,
            dst_port: original.src_port,
            ..original
        };
        debug_assert_eq!(original.invert(), Some(reply));
        let state = udp::UdpConn::new(now);
        let (Verdict::Accept { timeout }, assure) = udp::packet(
            &state,
            false,
            false,
            now,
            udp::Timeouts::udp(&self.settings),
        ) else {
            return general();
        };
        // Decided: from here on, what the general path does to such a packet.
        let id = self.next_conn_id();
        let mut conn = Conn {
            original,
            status: 0,
            // Before confirmation, the timeout itself.
            deadline: timeout,
            mark: 0,
            zone: 0,
            proto: ProtoState::Udp(state),
            id,
            events: 0,
            helper: None,
            rare: Conn::NO_RARE,
            extras: Conn::NO_EXTRAS,
        };
        if assure {
            conn.status |= ips::ASSURED;
            conn.events |= ipct::ASSURED;
        }
        let mut extras = Extras {
            start: now,
            ..Extras::default()
        };
        if self.settings.acct {
            extras.counters[0].packets += 1;
            extras.counters[0].bytes += u64::from(u.len());
        }
        self.pending = Some(Pending {
            conn,
            reply,
            rare: Rare::default(),
            extras,
            hash: h.hash,
        });
        Ok(InResult {
            state: PacketState::Tracked(CtInfo::New),
            ct: Some(CtRef::Unconfirmed),
            drop: None,
            invalid: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{HelperName, Template, TimeoutName};
    use crate::expect::Expectation;
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
            /// Hashed four at a time on the fast path.
            four: bool,
            /// A new connection's datagram the fast path left handed to
            /// `conntrack_in_udp4_new` by the caller, not through `conntrack_in_prefetched`.
            direct: bool,
            sum: u8,
            local_out: bool,
            /// 0: none; 1: zone 1; 2: zone 0 and the timeout policy.
            template: u8,
            snat: bool,
            confirm: bool,
        },
        Wait(u64),
        /// A helper expects a connection from one host to another's port (any source port).
        Expect(usize, usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => ((0usize..3, 0usize..3, 0usize..3, 0usize..3), 0u8..4, any::<bool>(), 0u8..5,
                  any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
                .prop_map(|(ends, sum, local_out, template, snat, confirm, four, direct)| {
                    Op::Packet {
                    ends,
                    four,
                    direct,
                    sum: [0, 0, 1, 2][usize::from(sum)],
                    local_out: local_out && sum == 0,
                    template: [0, 0, 0, 1, 2][usize::from(template)],
                    snat,
                    confirm: confirm || sum != 0,
                }}),
            1 => (0u64..200).prop_map(|s| Op::Wait(s * SECOND / 2)),
            1 => (0usize..3, 0usize..3, 0usize..3).prop_map(|(f, t, p)| Op::Expect(f, t, p)),
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

    /// What a TFTP helper expects after a request from `to` to `from`'s port 69: a
    /// connection from `from` to `to`'s port, from any source port.
    fn expectation(from: usize, to: usize, dport: usize, now: u64) -> Expectation {
        let bytes = datagram(from, to, 0, dport, 0);
        let tuple = Udp4::parse(&bytes).expect("a well-formed datagram").tuple();
        let master = ctrack_packet::Tuple {
            src: tuple.dst,
            dst: tuple.src,
            src_port: 1234,
            dst_port: 69,
            ..tuple
        };
        Expectation {
            tuple,
            master,
            zone: 0,
            deadline: now + crate::expect::EXPECT_TIMEOUT_NS,
            helper: HelperName::new("tftp").expect("a helper"),
            follow_master: None,
        }
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
                four,
                direct,
                sum,
                local_out,
                template,
                snat: translate,
                confirm,
            } = *op
            else {
                match *op {
                    Op::Wait(dt) => now += dt,
                    Op::Expect(from, to, dport) => {
                        let e = expectation(from, to, dport, now);
                        let made = general.expect_related(e, now);
                        prop_assert_eq!(made, fast.expect_related(e, now));
                    }
                    Op::Packet { .. } => unreachable!("taken above"),
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
            // One by one, or hashed four at a time (the other three being the same datagram);
            // a datagram the fast path leaves goes to the general path with what it made.
            // Hashed four at a time, a packet to be confirmed with nothing between is
            // tracked and committed at once.
            let commit = four && confirm && !translate;
            let mut committed = false;
            let fast_path = match (tmpl, Udp4::parse(&bytes)) {
                (None, Some(u)) => {
                    let r = if four {
                        let p = fast.prefetch_udp4_x4([&u; 4]);
                        if commit {
                            fast.conntrack_in_udp4_committed(&u, hook, now, &p[3])
                        } else {
                            fast.conntrack_in_udp4_prefetched(&u, hook, now, &p[3])
                        }
                    } else {
                        fast.conntrack_in_udp4(&u, hook, now)
                    };
                    committed = commit && r.is_ok();
                    Some(match r {
                        Err(p) if direct => fast.conntrack_in_udp4_new(&u, hook, now, &p),
                        r => r,
                    })
                }
                _ => None,
            };
            taken += usize::from(matches!(fast_path, Some(Ok(_))));
            let b = match fast_path {
                Some(Ok(r)) => r,
                Some(Err(p)) => fast.conntrack_in_prefetched(&d, hook, now, &p),
                None => fast.conntrack_in_with(&d, hook, now, tmpl.as_ref()),
            };
            prop_assert_eq!(a, b, "{:?} at {}", op, now);
            for (ct, r, committed) in [(&mut general, a, false), (&mut fast, b, committed)] {
                if committed {
                    continue;
                }
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
            // No limit, or a table that fills up (early drop, "table full").
            max in prop_oneof![Just(0u32), 1u32..5],
        ) {
            let settings = Settings { checksum, acct, max, ..Settings::default() };
            run_both(settings, &ops)?;
        }
    }

    #[test]
    fn four_hashed_at_once_are_found_as_one_by_one() {
        let mut ct = tracker(&Settings::default());
        let frames: Vec<_> = (0..4)
            .map(|i| datagram(i % 3, (i + 1) % 3, i % 3, 0, 0))
            .collect();
        let us: Vec<_> = frames
            .iter()
            .map(|b| Udp4::parse(b).expect("parses"))
            .collect();
        let ps = ct.prefetch_udp4_x4([&us[0], &us[1], &us[2], &us[3]]);
        for (u, p) in us.iter().zip(&ps) {
            assert_eq!(p.hash, ct.table.hash(&u.tuple(), 0));
        }
        // Made, then found with the hash made four at a time, or with another datagram's
        // hint, whose hash is not taken.
        let d = Datagram::parse(&frames[0]).expect("parses");
        let r = ct.conntrack_in(&d, Hook::PreRouting, SECOND);
        ct.confirm(&r, SECOND);
        for p in [&ps[0], &ps[1]] {
            let found = ct.conntrack_in_udp4_prefetched(&us[0], Hook::PreRouting, SECOND, p);
            assert_eq!(found.ok().and_then(|r| r.ct), Some(CtRef::Confirmed(0)));
        }
        // In a full table, a new connection's datagram is left with its tuple and hash,
        // marked looked up.
        ct.settings.max = 1;
        let Err(p) = ct.conntrack_in_udp4_prefetched(&us[1], Hook::PreRouting, SECOND, &ps[1])
        else {
            panic!("early drop is the general path's");
        };
        assert_eq!(p.hint.hash, ps[1].hash);
        assert_eq!(
            (p.hint.tuple, p.hint.fast_path_missed),
            (us[1].tuple(), true)
        );
    }

    #[test]
    fn a_miss_makes_a_connection_only_while_it_holds() {
        let mut ct = tracker(&Settings::default());
        let (a, b) = (datagram(0, 1, 1, 0, 0), datagram(1, 2, 1, 0, 0));
        let (ua, ub) = (
            Udp4::parse(&a).expect("parses"),
            Udp4::parse(&b).expect("parses"),
        );
        let pre = Hook::PreRouting;
        let (Err(miss_a), Err(miss_b)) = (
            ct.conntrack_in_udp4(&ua, pre, SECOND),
            ct.conntrack_in_udp4(&ub, pre, SECOND),
        ) else {
            panic!("two new connections");
        };
        assert_eq!(
            ct.conntrack_in_udp4_new(&ub, pre, SECOND, &miss_a),
            Err(miss_a),
            "another datagram's miss"
        );
        let r = ct
            .conntrack_in_udp4_new(&ua, pre, SECOND, &miss_a)
            .expect("a new connection made from its miss");
        assert_eq!(r.ct, Some(CtRef::Unconfirmed));
        ct.confirm(&r, SECOND);
        // The table made an entry since these misses: either might be theirs.
        assert!(ct.conntrack_in_udp4_new(&ua, pre, SECOND, &miss_a).is_err());
        assert!(ct.conntrack_in_udp4_new(&ub, pre, SECOND, &miss_b).is_err());
        // A batch's first pass looked nothing up.
        let d = Datagram::parse(&b).expect("parses");
        let hint = ct.prefetch(&d).expect("a tuple");
        assert!(ct.conntrack_in_udp4_new(&ub, pre, SECOND, &hint).is_err());
        // The general path, given the old miss, looks it up again.
        for _ in 0..2 {
            let r = ct.conntrack_in_prefetched(&d, pre, SECOND, &miss_b);
            ct.confirm(&r, SECOND);
        }
        assert_eq!(ct.count(), 2);
        // A packet dropped since makes the host's answer to it RELATED, not new.
        let answer = datagram(0, 2, 2, 0, 0);
        let u = Udp4::parse(&answer).expect("parses");
        let Err(miss) = ct.conntrack_in_udp4(&u, Hook::LocalOut, SECOND) else {
            panic!("a new connection");
        };
        let dropped = datagram(2, 0, 0, 2, 0);
        let dropped = Datagram::parse(&dropped).expect("parses");
        let r = ct.conntrack_in(&dropped, pre, SECOND);
        ct.discard(&r);
        assert!(ct
            .conntrack_in_udp4_new(&u, Hook::LocalOut, SECOND, &miss)
            .is_err());
    }

    #[test]
    fn a_known_flow_takes_the_fast_path_and_the_rest_does_not() {
        let packet = |from, to, sport, dport| Op::Packet {
            ends: (from, to, sport, dport),
            four: sport == 0,
            direct: true,
            sum: 0,
            local_out: false,
            template: 0,
            snat: false,
            confirm: true,
        };
        // A request, its reply, one more each way and a new flow are taken; a packet to
        // itself is not, nor a new flow an expectation may make RELATED.
        let ops = [
            packet(0, 1, 1, 0),
            packet(1, 0, 0, 1),
            packet(0, 1, 1, 0),
            packet(1, 0, 0, 1),
            packet(0, 2, 1, 0),
            packet(2, 2, 1, 0),
            Op::Expect(1, 2, 2),
            packet(1, 2, 0, 2),
        ];
        let taken = run_both(Settings::default(), &ops).expect("the same");
        assert_eq!(taken, 5);
    }
}
