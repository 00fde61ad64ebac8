use super::*;
use ctrack_conntrack::format::conntrack_line;
use ctrack_packet::checksum;

const C: [u8; 4] = [10, 0, 1, 2];
const S: [u8; 4] = [10, 0, 2, 2];
const SEC: u64 = 1_000_000_000;

use crate::workload::ipv4;

fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sp.to_be_bytes());
    t[2..4].copy_from_slice(&dp.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(src, dst, 17, &udp_segment(sp, dp, payload))
}

/// A UDP header and its payload, the checksum left to the IP layer's builder.
fn udp_segment(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sp.to_be_bytes());
    u[2..4].copy_from_slice(&dp.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

fn acct() -> Settings {
    Settings {
        acct: true,
        ..Default::default()
    }
}

fn listing(e: &Engine, now: u64) -> Vec<String> {
    let mut v: Vec<String> = e
        .conntrack()
        .listing()
        .map(|(c, reply, x)| conntrack_line(c, &reply, &x, now, true, false))
        .collect();
    v.sort();
    v
}

/// A TCP handshake from C:40000 to S:80 forwarded, a microsecond between segments: what
/// became of each segment.
fn handshake(e: &mut Engine) -> Vec<Fate> {
    [
        tcp(C, S, 40000, 80, 0x02, 100, 0),
        tcp(S, C, 80, 40000, 0x12, 500, 101),
        tcp(C, S, 40000, 80, 0x10, 101, 501),
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| e.process(p, Entry::Wire, i as u64 * 1000).fate)
    .collect()
}

#[test]
fn forwarded_handshake_is_established_and_assured() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    assert_eq!(handshake(&mut e), [Fate::Forwarded; 3]);
    assert_eq!(
        listing(&e, 0),
        vec!["ipv4     2 tcp      6 432000 ESTABLISHED src=10.0.1.2 dst=10.0.2.2 sport=40000 dport=80 packets=2 bytes=80 src=10.0.2.2 dst=10.0.1.2 sport=80 dport=40000 packets=1 bytes=40 [ASSURED] mark=0 use=1"]
    );
}

#[test]
fn local_traffic_takes_input_and_output() {
    let host = Host::new(vec![(Addr::v4(S), Family::V4)]);
    let mut e = Engine::new(acct(), host, 1);
    let o = e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 0);
    assert_eq!((o.fate, o.entry_hook), (Fate::Delivered, Hook::PreRouting));
    let o = e.process(&udp(S, C, 53, 5000, b"a"), Entry::Host, 1);
    assert_eq!((o.fate, o.entry_hook), (Fate::Sent, Hook::LocalOut));
    assert_eq!(
        o.state,
        PacketState::Tracked(ctrack_conntrack::CtInfo::EstablishedReply)
    );
    assert_eq!(e.conntrack().count(), 1);
}

#[test]
fn udp_entry_expires_after_its_timeout() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    e.conntrack_mut().record_events(true);
    e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 0);
    e.advance(29 * SEC);
    assert_eq!(e.conntrack().count(), 1);
    e.advance(30 * SEC);
    assert_eq!(e.conntrack().count(), 0);
    use ctrack_conntrack::EventKind::*;
    assert_eq!(event_kinds(&mut e), vec![New, Destroy]);
}

#[test]
fn bad_checksum_is_invalid_and_creates_nothing() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    let mut p = udp(C, S, 5000, 53, b"q");
    let n = p.len();
    p[n - 1] ^= 0xff;
    let o = e.process(&p, Entry::Wire, 0);
    assert_eq!(o.state, PacketState::Invalid);
    assert_eq!(o.invalid, Some("bad checksum"));
    assert_eq!(e.conntrack().count(), 0);
    assert_eq!(e.conntrack().stats().invalid, 1);
    // Sent by the host, the same packet is not checked (the kernel trusts its own stack).
    let o = e.process(&p, Entry::Host, 0);
    assert!(matches!(o.state, PacketState::Tracked(_)));
}

#[test]
fn full_table_early_drops_unassured_then_drops_and_logs() {
    let mut s = acct();
    s.max = 4;
    s.buckets = 1;
    let mut e = Engine::new(s, Host::default(), 1);
    for port in 0..4 {
        e.process(&udp(C, S, 1000 + port, 53, b"q"), Entry::Wire, 0);
    }
    assert_eq!(e.conntrack().count(), 4);
    // One bucket: early drop evicts every unassured entry in it.
    let o = e.process(&udp(C, S, 2000, 53, b"q"), Entry::Wire, 1);
    assert_eq!(o.fate, Fate::Forwarded);
    assert_eq!(e.conntrack().stats().early_drop, 4);
    assert_eq!(e.conntrack().count(), 1);

    // Now fill it with assured TCP connections: nothing can be evicted.
    let mut s = acct();
    s.max = 2;
    s.buckets = 1;
    let mut e = Engine::new(s, Host::default(), 1);
    for port in [1u16, 2] {
        e.process(&tcp(C, S, port, 80, 0x02, 100, 0), Entry::Wire, 0);
        e.process(&tcp(S, C, 80, port, 0x12, 500, 101), Entry::Wire, 0);
        e.process(&tcp(C, S, port, 80, 0x10, 101, 501), Entry::Wire, 0);
    }
    let o = e.process(&udp(C, S, 9, 53, b"q"), Entry::Wire, 5);
    assert_eq!(o.fate, Fate::Dropped(DropReason::TableFull));
    assert_eq!(e.conntrack().stats().drop, 1);
    let log = e.conntrack_mut().take_log();
    assert_eq!(log, vec![(5, ctrack_conntrack::TABLE_FULL_LOG.to_string())]);
}

#[test]
fn rst_answering_syn_leaves_nothing() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    e.conntrack_mut().record_events(true);
    e.process(&tcp(C, S, 40000, 80, 0x02, 100, 0), Entry::Wire, 0);
    e.process(&tcp(S, C, 80, 40000, 0x14, 0, 101), Entry::Wire, 1);
    assert_eq!(e.conntrack().count(), 0);
    use ctrack_conntrack::EventKind::*;
    assert_eq!(event_kinds(&mut e), vec![New, Destroy]);
}

#[test]
fn fragments_are_tracked_once_reassembled() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    let whole = udp(C, S, 5000, 53, &[7u8; 40]);
    let payload = &whole[20..];
    let mut frag = |off: usize, data: &[u8], more: bool| {
        let mut p = whole[..20].to_vec();
        p[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        p[6..8].copy_from_slice(&fo.to_be_bytes());
        p[10] = 0;
        p[11] = 0;
        let c = checksum::finish(checksum::sum(&p, 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(data);
        e.process(&p, Entry::Wire, 0)
    };
    assert_eq!(frag(0, &payload[..24], true).fate, Fate::Held);
    assert_eq!(frag(24, &payload[24..], false).fate, Fate::Forwarded);
    let l = listing(&e, 0);
    assert!(l[0].contains("packets=1 bytes=68"), "{l:?}");
}

#[test]
fn malformed_packets_are_counted_not_fatal() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    for junk in [&[][..], &[0x45, 0, 0][..], &[0x60; 10][..], &[0xff; 60][..]] {
        let o = e.process(junk, Entry::Wire, 0);
        assert!(matches!(o.fate, Fate::Dropped(DropReason::Malformed(_))));
    }
    assert_eq!(e.counts().malformed, 4);
}

#[test]
fn ttl_exceeded_in_forwarding_confirms_nothing() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    let mut p = udp(C, S, 5000, 53, b"q");
    p[8] = 1;
    p[10] = 0;
    p[11] = 0;
    let c = checksum::finish(checksum::sum(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let o = e.process(&p, Entry::Wire, 0);
    assert_eq!(o.fate, Fate::Dropped(DropReason::TtlExceeded));
    assert_eq!(e.conntrack().count(), 0);
    // Delivered locally, TTL 1 is fine.
    let mut e = Engine::new(acct(), Host::new(vec![(Addr::v4(S), Family::V4)]), 1);
    assert_eq!(e.process(&p, Entry::Wire, 0).fate, Fate::Delivered);
}

#[test]
fn reject_answers_like_the_kernel() {
    use ctrack_rules::RejectWith;
    let host = Host::new(vec![(Addr::v4(S), Family::V4)]);
    // A SYN is answered by RST+ACK acknowledging it, from the address it was sent to.
    let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
    let d = Datagram::parse(&syn).unwrap();
    let r = reject::reply(&d, RejectWith::TcpReset, &host, false).unwrap();
    let rd = Datagram::parse(&r).unwrap();
    assert_eq!((rd.src, rd.dst, rd.ttl), (Addr::v4(S), Addr::v4(C), 64));
    let t = ctrack_packet::TcpView::new(rd.l4()).unwrap();
    assert_eq!(
        (t.src_port(), t.dst_port(), t.flags().0, t.seq(), t.ack()),
        (80, 40000, 0x14, 0, 101)
    );
    assert!(checksum::verify(
        Family::V4,
        rd.src,
        rd.dst,
        6,
        rd.l4(),
        true
    ));
    // A segment with ACK gets a bare RST at its acknowledgement number.
    let ack = tcp(C, S, 40000, 80, 0x10, 101, 777);
    let r = reject::reply(
        &Datagram::parse(&ack).unwrap(),
        RejectWith::TcpReset,
        &host,
        false,
    )
    .unwrap();
    let t = ctrack_packet::TcpView::new(Datagram::parse(&r).unwrap().l4()).unwrap();
    assert_eq!((t.flags().0, t.seq()), (0x04, 777));
    // No answer to a reset, and no reset for UDP.
    let rst = tcp(C, S, 40000, 80, 0x04, 101, 0);
    assert!(reject::reply(
        &Datagram::parse(&rst).unwrap(),
        RejectWith::TcpReset,
        &host,
        false
    )
    .is_none());
    let u = udp(C, S, 5000, 53, b"q");
    assert!(reject::reply(
        &Datagram::parse(&u).unwrap(),
        RejectWith::TcpReset,
        &host,
        false
    )
    .is_none());
    // Port unreachable quotes the datagram, from the host's address, precedence 0xc0.
    let r = reject::reply(
        &Datagram::parse(&u).unwrap(),
        RejectWith::Unreachable(3),
        &host,
        false,
    )
    .unwrap();
    let rd = Datagram::parse(&r).unwrap();
    assert_eq!((rd.proto, rd.tos, rd.l4()[0], rd.l4()[1]), (1, 0xc0, 3, 3));
    assert_eq!(&rd.l4()[8..], &u[..]);
    assert!(checksum::verify(
        Family::V4,
        rd.src,
        rd.dst,
        1,
        rd.l4(),
        false
    ));
}

/// The kinds of the events recorded so far, in order.
fn event_kinds(e: &mut Engine) -> Vec<ctrack_conntrack::EventKind> {
    e.conntrack_mut()
        .take_events()
        .iter()
        .map(|ev| ev.kind)
        .collect()
}

/// Connections through SNAT on four flow-sharded workers: how many replies come back to
/// the worker that holds their connection, as `(replies, on the right worker and
/// ESTABLISHED, source ports changed)`.
fn sharded_snat(affinity: bool) -> (usize, usize, usize) {
    use ctrack_conntrack::shard::Dealer;
    let rules = ctrack_rules::load(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1\n\
         COMMIT\n",
        "snat.rules",
    )
    .expect("valid");
    let dealer = Dealer::new(4, 11);
    let mut workers: Vec<Engine> = (0..4)
        .map(|w| {
            let mut rs = ctrack_rules::Ruleset::default();
            rs.add(rules.clone());
            let mut e = Engine::with_rules(Settings::default(), Host::default(), 5 + w, rs);
            e.emit_output(true);
            if affinity {
                e.conntrack_mut().set_affinity(dealer, w as u32);
            }
            e
        })
        .collect();
    let deal = |p: &[u8]| dealer.worker_of(&Datagram::parse(p).expect("valid")) as usize;
    let (mut replies, mut home, mut changed) = (0, 0, 0);
    for i in 0..400u16 {
        let client = [10, 0, (i >> 8) as u8, i as u8];
        let syn = tcp(client, [198, 51, 100, 1], 30000 + i, 80, 0x02, 1, 0);
        let o = workers[deal(&syn)].process(&syn, Entry::Wire, SEC);
        let out = o.leaving.expect("forwarded");
        let d = Datagram::parse(&out).expect("valid");
        assert_eq!(d.src, Addr::v4([192, 0, 2, 1]), "translated");
        let port = u16::from_be_bytes([d.l4()[0], d.l4()[1]]);
        changed += usize::from(port != 30000 + i);
        let synack = tcp([198, 51, 100, 1], [192, 0, 2, 1], 80, port, 0x12, 9, 2);
        replies += 1;
        let r = workers[deal(&synack)].process(&synack, Entry::Wire, SEC + 1);
        if r.state == PacketState::Tracked(ctrack_conntrack::CtInfo::EstablishedReply) {
            home += 1;
        }
    }
    (replies, home, changed)
}

#[test]
fn sharded_snat_brings_every_reply_back_to_its_worker() {
    let (replies, home, changed) = sharded_snat(true);
    assert_eq!(home, replies, "every reply met its connection");
    // About three in four original ports would have dealt elsewhere.
    assert!(
        changed > replies / 2,
        "{changed} of {replies} ports changed"
    );
    // Without the affinity most replies land on a worker that has never seen them.
    let (replies, home, changed) = sharded_snat(false);
    assert_eq!(changed, 0, "the kernel keeps a free source port");
    assert!(
        home < replies / 2,
        "{home} of {replies} replies found their worker"
    );
}

#[test]
fn connbytes_turns_accounting_on_and_matches_the_counters_with_this_packet() {
    let rules = ctrack_rules::load(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m connbytes --connbytes 3: --connbytes-dir both --connbytes-mode packets \
         -j DROP\nCOMMIT\n",
        "connbytes.rules",
    )
    .expect("valid");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(rules);
    assert!(!Settings::default().acct);
    let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
    assert!(
        e.conntrack().settings().acct,
        "xt_connbytes forces accounting on"
    );
    let fates: Vec<bool> = [
        udp(C, S, 5000, 53, b"q"),
        udp(S, C, 53, 5000, b"a"),
        udp(C, S, 5000, 53, b"q"),
        udp(S, C, 53, 5000, b"a"),
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| e.process(p, Entry::Wire, i as u64).fate == Fate::Forwarded)
    .collect();
    // The third packet of the connection is the first the counters make it match.
    assert_eq!(fates, [true, true, false, false]);
    let x = e.conntrack().extras(CtRef::Confirmed(0));
    assert_eq!((x.counters[0].packets, x.counters[1].packets), (2, 2));
    assert!(listing(&e, 0)[0].contains("packets=2 bytes=58"));
}

#[test]
fn without_accounting_or_timestamps_no_extras_are_kept() {
    let mut e = Engine::new(Settings::default(), Host::default(), 1);
    e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 0);
    let (i, c) = e.conntrack().table().iter().next().expect("one entry");
    assert_eq!(c.extras, ctrack_conntrack::Conn::NO_EXTRAS);
    assert_eq!(
        e.conntrack().extras(CtRef::Confirmed(i)),
        Default::default()
    );
    let mut e = Engine::new(acct(), Host::default(), 1);
    e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 0);
    let (i, c) = e.conntrack().table().iter().next().expect("one entry");
    assert_ne!(c.extras, ctrack_conntrack::Conn::NO_EXTRAS);
    assert_eq!(
        e.conntrack().extras(CtRef::Confirmed(i)).counters[0].packets,
        1
    );
}

#[test]
fn connlimit_counts_what_its_rule_saw_and_drops_closed_and_refused_connections() {
    let rules = ctrack_rules::load(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -p tcp --syn -m connlimit --connlimit-above 1 -j DROP\nCOMMIT\n",
        "connlimit.rules",
    )
    .expect("valid");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(rules);
    let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
    let mut at = 0;
    let mut send = |e: &mut Engine, p: Vec<u8>| {
        at += SEC;
        e.process(&p, Entry::Wire, at).fate == Fate::Forwarded
    };
    // UDP from the same source is in the table, but the rule never saw it.
    assert!(send(&mut e, udp(C, S, 5000, 53, b"q")));
    assert!(send(&mut e, tcp(C, S, 40001, 80, 0x02, 100, 0)), "first: 1");
    assert!(
        !send(&mut e, tcp(C, S, 40002, 80, 0x02, 100, 0)),
        "second: 2 > 1"
    );
    // The first closes; the refused second was never confirmed: both leave the count.
    assert!(send(&mut e, tcp(C, S, 40001, 80, 0x04, 101, 0)));
    assert!(send(&mut e, tcp(C, S, 40003, 80, 0x02, 100, 0)), "third: 1");
    assert!(
        !send(&mut e, tcp(C, S, 40004, 80, 0x02, 100, 0)),
        "fourth: 2 > 1"
    );
}

/// The entries left once time has come to `now`.
fn count_at(e: &mut Engine, now: u64) -> usize {
    e.advance(now);
    e.conntrack().count()
}

/// When the DESTROY events recorded so far happened.
fn destroy_times(e: &mut Engine) -> Vec<u64> {
    e.conntrack_mut()
        .take_events()
        .into_iter()
        .filter(|ev| ev.kind == ctrack_conntrack::EventKind::Destroy)
        .map(|ev| ev.time)
        .collect()
}

#[test]
fn a_connection_refreshed_after_its_timer_was_set_expires_at_its_new_deadline() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    e.conntrack_mut().record_events(true);
    e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 0);
    e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 10 * SEC);
    // The first timer (30 s) fires and finds the deadline moved to 40 s.
    assert_eq!(count_at(&mut e, 31 * SEC), 1);
    assert_eq!(count_at(&mut e, 39 * SEC), 1);
    assert_eq!(count_at(&mut e, 41 * SEC), 0, "expired at 40 s");
    assert_eq!(destroy_times(&mut e), [40 * SEC]);
}

#[test]
fn a_connection_whose_deadline_comes_nearer_expires_at_it_not_at_its_old_one() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    e.conntrack_mut().record_events(true);
    assert_eq!(handshake(&mut e), [Fate::Forwarded; 3]);
    // ESTABLISHED, 432,000 s; the reset leaves it CLOSE for 10 s from 5 s.
    e.process(&tcp(C, S, 40000, 80, 0x04, 101, 0), Entry::Wire, 5 * SEC);
    assert_eq!(count_at(&mut e, 14 * SEC), 1);
    assert_eq!(count_at(&mut e, 16 * SEC), 0, "expired at 15 s");
    assert_eq!(destroy_times(&mut e), [15 * SEC]);
}

#[test]
fn jumps_gotos_and_returns_walk_chains_as_ipt_do_table_and_leave_nothing_behind() {
    // a is jumped to and goes to b; b returns to FORWARD, jumps to c, or drops; c accepts
    // sport 8 and otherwise ends, back in b after its jump.
    let rules = ctrack_rules::load(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :a - [0:0]\n:b - [0:0]\n:c - [0:0]\n\
         -A FORWARD -p udp -j a\n-A FORWARD -p udp --dport 53 -j ACCEPT\n\
         -A a -p udp --dport 53 -g b\n-A a -j DROP\n\
         -A b -p udp --sport 7 -j RETURN\n-A b -j c\n-A b -j DROP\n\
         -A c -p udp --sport 8 -j ACCEPT\nCOMMIT\n",
        "chains.rules",
    )
    .expect("valid");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(rules);
    let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
    let fates: Vec<bool> = [
        // goto b, RETURN from b: back in FORWARD after the jump to a, not in a.
        udp(C, S, 7, 53, b"q"),
        // accepted in c with two walks under way.
        udp(C, S, 8, 53, b"q"),
        // c ends: back in b after its jump, which drops.
        udp(C, S, 9, 53, b"q"),
        // a drops what it does not send on.
        udp(C, S, 9, 54, b"q"),
        // No rule matches, so FORWARD's policy: had the walk that accepted in c left its
        // returns behind, the end of FORWARD would go back into b and drop.
        tcp(C, S, 40000, 80, 0x02, 1, 0),
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| e.process(p, Entry::Wire, i as u64).fate == Fate::Forwarded)
    .collect();
    assert_eq!(fates, [true, true, false, false, true]);
}

/// Built-in chains without rules decide by their policy without a walk: the same fates,
/// drop reasons and policy counters as the same chains holding a rule no packet matches.
#[test]
fn an_empty_chain_decides_and_counts_as_a_walked_one() {
    let tables = |rule: &str| {
        let mut text = String::new();
        for table in ["raw", "mangle", "filter"] {
            let chains = ctrack_rules::model::builtin_chains(table).expect("a built-in table");
            text.push_str(&format!("*{table}\n"));
            for c in chains {
                let policy = if *c == "FORWARD" && table == "filter" {
                    "DROP"
                } else {
                    "ACCEPT"
                };
                text.push_str(&format!(":{c} {policy} [0:0]\n"));
            }
            if !rule.is_empty() {
                for c in chains {
                    text.push_str(&format!("-A {c} {rule}\n"));
                }
            }
            text.push_str("COMMIT\n");
        }
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(&text, "empty.rules").expect("valid"));
        Engine::with_rules(
            Settings::default(),
            Host::new(vec![(Addr::v4(S), Family::V4)]),
            1,
            rs,
        )
    };
    let run = |e: &mut Engine| -> Vec<Fate> {
        [
            udp(C, S, 5000, 53, b"to the host"),
            udp(C, [10, 0, 3, 3], 5000, 53, b"through it"),
            tcp(S, C, 80, 40000, 0x02, 1, 0),
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let entry = if i == 2 { Entry::Host } else { Entry::Wire };
            e.process(p, entry, i as u64 * SEC).fate
        })
        .collect()
    };
    let (mut empty, mut walked) = (tables(""), tables("-p icmp -j DROP"));
    let fates = run(&mut empty);
    assert_eq!(fates, run(&mut walked));
    assert!(matches!(
        fates[1],
        Fate::Dropped(DropReason::Rule { rule: None, .. })
    ));
    assert_eq!(fates[0], Fate::Delivered);
    let policies = |e: &Engine| -> Vec<(String, String, u64, u64)> {
        let v4 = e.rules().v4.as_ref().expect("IPv4 rules");
        v4.tables
            .iter()
            .flat_map(|t| {
                t.chains.iter().map(|c| {
                    (
                        t.name.clone(),
                        c.name.clone(),
                        c.counters.packets,
                        c.counters.bytes,
                    )
                })
            })
            .collect()
    };
    assert_eq!(policies(&empty), policies(&walked));
    // Every packet passed raw and mangle at the hook it entered by; the counters moved.
    assert!(policies(&empty)
        .iter()
        .any(|(t, c, p, b)| t == "raw" && c == "PREROUTING" && *p == 2 && *b > 0));
}

#[test]
fn a_template_serves_only_its_own_packet() {
    // raw's CT gives port 53's connection zone 7; the packets after it, untemplated, make
    // and find connections in zone 0, as the kernel's template is the skb's alone.
    let rules = ctrack_rules::load(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A PREROUTING -p udp --dport 53 -j CT --zone 7\nCOMMIT\n",
        "zone.rules",
    )
    .expect("valid");
    let mut rs = ctrack_rules::Ruleset::default();
    rs.add(rules);
    let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
    let dns = udp(C, S, 5353, 53, b"q");
    let web = udp(C, S, 5353, 80, b"q");
    for (i, p) in [&dns, &web, &web, &dns, &web].into_iter().enumerate() {
        let o = e.process(p, Entry::Wire, SEC + i as u64);
        assert!(
            !matches!(o.fate, Fate::Dropped(_)),
            "packet {i}: {:?}",
            o.fate
        );
    }
    let mut zones: Vec<(u16, u16)> = e
        .conntrack()
        .listing()
        .map(|(c, _, _)| (c.original.dst_port, c.zone))
        .collect();
    zones.sort();
    assert_eq!(zones, [(53, 7), (80, 0)]);
    let web_state = e.process(&web, Entry::Wire, SEC + 9).state;
    assert_eq!(
        web_state,
        PacketState::Tracked(ctrack_conntrack::CtInfo::New),
        "port 80's packets find their zone-0 connection, unreplied"
    );
}

/// `--ctstate SNAT` alone is decided from the rule's record and the connection's status,
/// without the packet's whole context: a connection the nat table translated has the bit,
/// and in a host without a nat table no connection can have it.
#[test]
fn ctstate_snat_sees_the_binding_without_the_whole_context() {
    let engine = |nat: &str| {
        let text = format!(
            "{nat}*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -m conntrack --ctstate SNAT -j ACCEPT\n\
             -A FORWARD -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
        );
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(&text, "snat.rules").expect("valid"));
        Engine::with_rules(Settings::default(), Host::default(), 1, rs)
    };
    let snat = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j SNAT --to-source 10.0.9.9\nCOMMIT\n";
    // A request and its answer (to the translated address); the fates, and the packets
    // counted by FORWARD's two rules.
    let run = |e: &mut Engine, answer_to: [u8; 4]| {
        let fates: Vec<Fate> = [udp(C, S, 5000, 53, b"q"), udp(S, answer_to, 53, 5000, b"a")]
            .iter()
            .enumerate()
            .map(|(i, p)| e.process(p, Entry::Wire, i as u64 * SEC).fate)
            .collect();
        let v4 = e.rules().v4.as_ref().expect("IPv4 rules");
        let filter = v4
            .tables
            .iter()
            .find(|t| t.name == "filter")
            .expect("filter");
        let forward = filter.chain("FORWARD").expect("FORWARD");
        let counted: Vec<u64> = filter.chains[forward]
            .rules
            .iter()
            .map(|r| r.counters.packets)
            .collect();
        (fates, counted)
    };
    // The request is NEW (rule 1: its SNAT binding comes in POSTROUTING); the answer is
    // ESTABLISHED and SNAT (rule 0).
    let (fates, counted) = run(&mut engine(snat), [10, 0, 9, 9]);
    assert_eq!(fates, [Fate::Forwarded, Fate::Forwarded]);
    assert_eq!(counted, [1, 1]);
    // Without a nat table the answer is ESTABLISHED only: no rule takes it, the policy
    // drops it.
    let (fates, counted) = run(&mut engine(""), C);
    assert_eq!(fates[0], Fate::Forwarded);
    assert!(matches!(fates[1], Fate::Dropped(_)), "{fates:?}");
    assert_eq!(counted, [0, 1]);
}

/// Rules of the walk-keeping test: indexes into small choices, some a record decides
/// (addresses, protocol, state), some it cannot (a port, a mark, a MARK target).
#[derive(Clone, Debug)]
struct GenRule {
    src: Option<(usize, bool)>,
    dst: Option<(usize, bool)>,
    proto: Option<usize>,
    state: Option<(usize, bool)>,
    whole: Option<usize>,
    target: usize,
}

fn gen_rule() -> impl proptest::strategy::Strategy<Value = GenRule> {
    use proptest::prelude::*;
    (
        proptest::option::of((0..5usize, any::<bool>())),
        proptest::option::of((0..5usize, any::<bool>())),
        proptest::option::of(0..3usize),
        proptest::option::of((0..4usize, any::<bool>())),
        proptest::option::weighted(0.4, 0..6usize),
        0..8usize,
    )
        .prop_map(|(src, dst, proto, state, whole, target)| GenRule {
            src,
            dst,
            proto,
            state,
            whole,
            target,
        })
}

/// The packets' addresses and the rules' networks, by family: the networks are the
/// subnets of [`memo_host`]'s interfaces, a host route, one beyond them and the whole
/// space, so that addresses, routes and interfaces cross in every way.
fn memo_addrs(f: Family) -> ([&'static str; 4], [&'static str; 5]) {
    match f {
        Family::V4 => (
            ["10.0.0.1", "10.0.1.1", "192.0.2.7", "198.51.100.7"],
            [
                "10.0.0.0/16",
                "10.0.0.1/32",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "0.0.0.0/0",
            ],
        ),
        Family::V6 => (
            ["2001:db8::1", "2001:db8:1::1", "fd00::7", "fd00:1::c8"],
            [
                "2001:db8::/48",
                "2001:db8::1/128",
                "fd00::/16",
                "fd00:1::/32",
                "::/0",
            ],
        ),
    }
}

/// One rule of chain `chain` (a user chain jumps nowhere, so that no loop is made).
fn gen_rule_text(chain: &str, g: &GenRule, f: Family, mangle: bool) -> String {
    let nets = memo_addrs(f).1;
    let not = |i: bool| if i { "! " } else { "" };
    let mut s = format!("-A {chain}");
    if let Some((n, i)) = g.src {
        s += &format!(" {}-s {}", not(i), nets[n]);
    }
    if let Some((n, i)) = g.dst {
        s += &format!(" {}-d {}", not(i), nets[n]);
    }
    let icmp = if f == Family::V4 { "icmp" } else { "ipv6-icmp" };
    let proto = g.proto.map(|p| ["udp", "tcp", icmp][p]);
    if let Some(p) = proto {
        s += &format!(" -p {p}");
    }
    if let Some((st, i)) = g.state {
        let states = ["NEW", "RELATED,ESTABLISHED", "ESTABLISHED", "SNAT,NEW"][st];
        s += &format!(" -m conntrack {}--ctstate {states}", not(i));
    }
    // Tests a record cannot hold: some the same for every packet of a connection in one
    // direction (a port, the interfaces), some not: a mark, the connection's status, and a
    // length (the payloads are 0 to 2 bytes).
    let header = if f == Family::V4 { 28 } else { 48 };
    // Only filter's chains, reached from FORWARD alone, may test both interfaces.
    match (g.whole, proto) {
        (Some(0), Some("udp")) => s += " --dport 53",
        (Some(0), _) if !mangle => s += " -i eth0",
        (Some(1), _) => s += " -m mark --mark 1",
        (Some(2), _) => s += &format!(" -m length --length 0:{}", header + 1),
        (Some(3), _) if !mangle => s += " -o eth1",
        (Some(4), _) => s += " -m conntrack --ctstatus ASSURED",
        (Some(_), _) if !mangle => s += " ! -i eth1",
        (Some(_), _) => s += " -m conntrack --ctdir ORIGINAL",
        _ => {}
    }
    let user = chain.starts_with('U');
    let t = match g.target {
        0 => "-j ACCEPT",
        1 => "-j DROP",
        2 => "-j RETURN",
        3 => "",
        4 if !user => "-j U1",
        5 if !user => "-g U2",
        6 if mangle => "-j MARK --set-mark 1",
        7 => "-j LOG --log-prefix kept",
        _ => "-j RETURN",
    };
    if !t.is_empty() {
        s += " ";
        s += t;
    }
    s + "\n"
}

/// The tables beside mangle and filter in the walk-keeping test, by number: none; raw's
/// chains empty, their policies ACCEPT, and an empty nat table; raw's PREROUTING with rules
/// without a target (the last rule some packets match, when no later one does: by
/// address, or by length) and one that matches nothing; raw's OUTPUT dropping by policy.
fn gen_other_tables(which: usize, f: Family) -> String {
    let net = memo_addrs(f).1[0];
    match which {
        1 => "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
              *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
              :POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
            .to_string(),
        // The length rule matches some of a connection's packets and not others.
        2 => format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -s {net}\n\
             -A PREROUTING -m length --length 0:{short}\n\
             -A PREROUTING -p tcp --dport 9 -j DROP\nCOMMIT\n",
            short = if f == Family::V4 { 28 } else { 48 }
        ),
        3 => "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n".to_string(),
        _ => String::new(),
    }
}

/// The packet with its TTL (or hop limit) set to `ttl`, its IPv4 header checksum made anew.
fn with_ttl(mut p: Vec<u8>, ttl: u8) -> Vec<u8> {
    if p[0] >> 4 == 6 {
        p[7] = ttl;
        return p;
    }
    p[8] = ttl;
    p[10..12].fill(0);
    let c = checksum::finish(checksum::sum(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// A ruleset of one family: mangle's PREROUTING and FORWARD, filter's FORWARD (its policy
/// `policy`) with two user chains.
fn gen_ruleset(
    f: Family,
    mangle: &[GenRule],
    (forward, policy): (&[GenRule], &str),
    user: &[GenRule],
) -> String {
    let mut t = String::from(
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:U1 - [0:0]\n:U2 - [0:0]\n",
    );
    for (i, g) in mangle.iter().enumerate() {
        let chain = ["PREROUTING", "FORWARD", "POSTROUTING", "U1"][i % 4];
        t += &gen_rule_text(chain, g, f, true);
    }
    t += &format!(
        "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :U1 - [0:0]\n:U2 - [0:0]\n"
    );
    for g in forward {
        t += &gen_rule_text("FORWARD", g, f, false);
    }
    for (i, g) in user.iter().enumerate() {
        t += &gen_rule_text(["U1", "U2"][i % 2], g, f, false);
    }
    t + "COMMIT\n"
}

/// The flows of the walk-keeping test: four over IPv4 (three UDP, one ICMP echo), two UDP
/// over IPv6, between the addresses of [`memo_addrs`].
fn memo_packet(flow: usize, reply: bool, n: u16) -> Vec<u8> {
    let (a, b) = [(0, 3), (1, 2), (2, 0), (3, 1), (0, 3), (2, 1)][flow];
    let (a, b) = if reply { (b, a) } else { (a, b) };
    let (sp, dp) = if reply {
        (53, 1000 + flow as u16)
    } else {
        (1000 + flow as u16, 53)
    };
    // Payloads of 0 to 2 bytes, so that a length test tells a connection's packets apart.
    let u = udp_segment(sp, dp, &[0, 0][..usize::from(n % 3)]);
    if flow >= 4 {
        let addr = |i: usize| {
            let a: std::net::Ipv6Addr = memo_addrs(Family::V6).0[i].parse().expect("an address");
            a.octets()
        };
        return crate::workload::ipv6(addr(a), addr(b), 17, &u);
    }
    let addr = |i: usize| {
        let a: std::net::Ipv4Addr = memo_addrs(Family::V4).0[i].parse().expect("an address");
        a.octets()
    };
    if flow == 3 {
        // An echo request or its reply, the sequence number counting.
        let mut icmp = vec![if reply { 0 } else { 8 }, 0, 0, 0, 0, 7];
        icmp.extend_from_slice(&n.to_be_bytes());
        return ipv4(addr(a), addr(b), 1, &icmp);
    }
    ipv4(addr(a), addr(b), 17, &u)
}

/// A port unreachable about flow `flow`'s request (IPv4, UDP) from one of two routers:
/// RELATED to it, from an address its connection's packets do not have.
fn memo_icmp_error(flow: usize, router: usize) -> Vec<u8> {
    let quoted = memo_packet(flow, false, 0);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..28]);
    let client: std::net::Ipv4Addr = memo_addrs(Family::V4).0[[0, 1][flow]]
        .parse()
        .expect("an address");
    ipv4(
        [[198, 51, 100, 9], [10, 0, 1, 7]][router],
        client.octets(),
        1,
        &icmp,
    )
}

/// The host of the walk-keeping test: two interfaces a family, so that `-i` and `-o` tell
/// the flows apart by their routes.
fn memo_host() -> Host {
    let iface = |name: &str, addr: &str, prefix: u8| {
        let (addr, family) = match addr.parse::<std::net::IpAddr>().expect("an address") {
            std::net::IpAddr::V4(a) => (Addr::v4(a.octets()), Family::V4),
            std::net::IpAddr::V6(a) => (Addr::v6(a.octets()), Family::V6),
        };
        Iface {
            name: name.into(),
            addr,
            prefix,
            family,
        }
    };
    Host::default().with_ifaces(vec![
        iface("eth0", "10.0.0.254", 16),
        iface("eth1", "192.0.2.254", 24),
        iface("eth0", "2001:db8::fe", 48),
        iface("eth1", "fd00::fe", 16),
    ])
}

/// Every counter of a ruleset, rule by rule and policy by policy.
fn all_counters(rs: &ctrack_rules::Ruleset) -> Vec<(u64, u64)> {
    [rs.v4.as_ref(), rs.v6.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|f| &f.tables)
        .flat_map(|t| &t.chains)
        .flat_map(|c| {
            std::iter::once(c.counters)
                .chain(c.rules.iter().map(|r| r.counters))
                .map(|x| (x.packets, x.bytes))
        })
        .collect()
}

proptest::proptest! {
    // Each case takes a fraction of a millisecond; the cases where the flows, the rules and
    // the time meet in a way that could go wrong are rare, so many are run.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// With walks kept per connection, every packet is decided as with every chain walked:
    /// the same fates, last rules and states, the same counters everywhere, the same
    /// table and log; whatever the rules (some reading only what a connection's packets
    /// share, records, state, ports, interfaces; some not: a length that differs packet by
    /// packet, the connection's status, LOG, MARK and a mark test between tables), the
    /// flows (both directions, both families, ICMP errors, the same packets from the wire
    /// and from the host, now and then a TTL of 1) and the time (connections expiring and
    /// their entries reused). Kept walks and kept ways through the hooks are taken beside
    /// empty raw and nat tables (after conntrack's fast path) and where raw has rules (after
    /// its general one), but not where the leaving datagram is asked for (`emit`).
    #[test]
    fn a_kept_walk_decides_and_counts_as_the_walk(
        mangle in proptest::collection::vec(gen_rule(), 0..5),
        forward in proptest::collection::vec(gen_rule(), 1..7),
        forward_accepts in proptest::bool::ANY,
        user in proptest::collection::vec(gen_rule(), 0..4),
        other_tables in 0..4usize,
        emit in proptest::bool::weighted(0.2),
        packets in proptest::collection::vec(
            (
                0..8usize,
                proptest::bool::ANY,
                0..8usize,
                proptest::bool::weighted(0.15),
                proptest::bool::weighted(0.1),
            ),
            1..40,
        ),
    ) {
        let engine = |remember: bool| {
            let mut rs = ctrack_rules::Ruleset::default();
            for f in [Family::V4, Family::V6] {
                let policy = if forward_accepts { "ACCEPT" } else { "DROP" };
                let text = gen_ruleset(f, &mangle, (&forward, policy), &user)
                    + &gen_other_tables(other_tables, f);
                let loaded = ctrack_rules::load_as(&text, "memo.rules", f);
                rs.add(loaded.map_err(|e| format!("{e}\n{text}")).expect("valid"));
            }
            let mut e = Engine::with_rules(Settings::default(), memo_host(), 1, rs);
            e.remember_walks(remember);
            e.emit_output(emit);
            e
        };
        let (mut kept, mut walked) = (engine(true), engine(false));
        let mut now = 0;
        for (i, &(flow, reply, step, host, ttl_1)) in packets.iter().enumerate() {
            // Mostly within a connection's timeout, sometimes past it.
            now += [1_000, 1_000, 1_000_000, SEC, SEC, 5 * SEC, 40 * SEC, 200 * SEC][step];
            let p = match flow {
                6 | 7 => memo_icmp_error(flow - 6, usize::from(reply)),
                f => memo_packet(f, reply, i as u16),
            };
            // A forwarded packet whose TTL runs out is dropped before FORWARD.
            let p = if ttl_1 { with_ttl(p, 1) } else { p };
            // Now and then the same packet sent by the host, where it has other hooks and no
            // input interface.
            let entry = if host { Entry::Host } else { Entry::Wire };
            let (a, b) = (kept.process(&p, entry, now), walked.process(&p, entry, now));
            proptest::prop_assert_eq!(a, b, "packet {}", i);
        }
        proptest::prop_assert_eq!(all_counters(kept.rules()), all_counters(walked.rules()));
        proptest::prop_assert_eq!(listing(&kept, now), listing(&walked, now));
        proptest::prop_assert_eq!(kept.take_log(), walked.take_log());
    }
}

/// A walk that read only what a connection's packets share (records, state, a port) is kept
/// once and taken again by the connection's next packets in that direction and state; a
/// walk that read what differs between them (a length) is not.
#[test]
fn only_walks_that_read_what_a_connection_shares_are_kept() {
    let engine = |rule: &str| {
        let text = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -s 10.9.0.0/16 -j DROP\n{rule}\nCOMMIT\n"
        );
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(&text, "kept.rules").expect("valid"));
        Engine::with_rules(Settings::default(), Host::default(), 1, rs)
    };
    let run = |e: &mut Engine| {
        for i in 0..3 {
            let fate = e
                .process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, i * SEC)
                .fate;
            assert_eq!(fate, Fate::Forwarded);
        }
        e.process(&udp(S, C, 53, 5000, b"a"), Entry::Wire, 3 * SEC);
        e.process(&udp(C, S, 5000, 53, b"q"), Entry::Wire, 4 * SEC);
    };
    // The first packet is NEW and unconfirmed: walked, not kept. The next two are NEW of a
    // confirmed connection: the first of them kept, the second taken; the answer
    // (ESTABLISHED, reply) and the request after it (ESTABLISHED) kept anew.
    let mut e = engine("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT");
    run(&mut e);
    assert_eq!(e.memo.distinct(), 1, "one way through the rules");
    assert_eq!(e.memo.connections(), [1, 1]);
    // The requests are accepted by the port, the answers by the rule after it.
    let mut e = engine("-A FORWARD -p udp --dport 53 -j ACCEPT\n-A FORWARD -p udp -j ACCEPT");
    run(&mut e);
    assert_eq!(
        e.memo.distinct(),
        2,
        "a port is the same for a connection's packets"
    );
    let mut e = engine("-A FORWARD -m length --length 0:100 -j ACCEPT");
    run(&mut e);
    assert_eq!(e.memo.distinct(), 0, "a length may differ packet by packet");
    // Walks kept or not, the counters are the walks'.
    let counted = |e: &Engine| all_counters(e.rules());
    let (mut on, mut off) = (
        engine("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"),
        engine("-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"),
    );
    off.remember_walks(false);
    run(&mut on);
    run(&mut off);
    assert_eq!(counted(&on), counted(&off));
    assert_eq!(off.memo.distinct(), 0);
}

/// A connection's packets that come from the wire and the same tuple sent by the host to
/// itself meet the same chain as the first walk of each, with other input interfaces (the
/// route to the source, and `lo`): a walk kept for the one is not taken by the other.
#[test]
fn a_walk_kept_from_the_wire_is_not_taken_by_the_host() {
    let engine = |remember: bool| {
        let text =
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                    :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                    -A PREROUTING -i lo -j ACCEPT\nCOMMIT\n";
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(text, "lo.rules").expect("valid"));
        let mut e = Engine::with_rules(Settings::default(), memo_host(), 1, rs);
        e.remember_walks(remember);
        e
    };
    let counted = |remember: bool| {
        let mut e = engine(remember);
        let q = udp([10, 0, 0, 1], [10, 0, 0, 254], 5000, 53, b"q");
        for (i, entry) in [Entry::Wire, Entry::Wire, Entry::Host, Entry::Host]
            .into_iter()
            .enumerate()
        {
            let fate = e.process(&q, entry, i as u64 * SEC).fate;
            assert_eq!(fate, Fate::Delivered, "packet {i}");
        }
        all_counters(e.rules())
    };
    let walked = counted(false);
    // The rule counts the two packets that came back in on lo.
    assert!(walked.contains(&(2, 2 * 29)), "{walked:?}");
    assert_eq!(counted(true), walked);
}

/// ICMP errors about one connection from two routers are RELATED to it alike, but their
/// source addresses differ: each is walked, none takes the other's walk.
#[test]
fn icmp_errors_from_two_routers_are_each_walked() {
    let fates = |remember: bool| {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n\
                    -A FORWARD -s 10.0.0.0/16 -j ACCEPT\nCOMMIT\n";
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(text, "related.rules").expect("valid"));
        let mut e = Engine::with_rules(Settings::default(), memo_host(), 1, rs);
        e.remember_walks(remember);
        let request = memo_packet(0, false, 0);
        let mut fates = vec![e.process(&request, Entry::Wire, 0).fate];
        for (i, router) in [0, 1, 0, 1].into_iter().enumerate() {
            let error = memo_icmp_error(0, router);
            fates.push(e.process(&error, Entry::Wire, (i as u64 + 1) * SEC).fate);
        }
        (fates, all_counters(e.rules()))
    };
    let (walked, counted) = fates(false);
    // 198.51.100.9's errors fall to the policy, 10.0.1.7's are accepted.
    assert!(matches!(walked[1], Fate::Dropped(_)), "{walked:?}");
    assert_eq!(walked[2], Fate::Forwarded);
    assert_eq!(fates(true), (walked, counted));
}

#[test]
fn an_outcome_reused_is_the_outcome_made_anew() {
    let engine = || {
        let rules = ctrack_rules::load(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -p udp --dport 53 -j REJECT\n\
             -A FORWARD -p tcp --dport 22 -j DROP\nCOMMIT\n",
            "reuse.rules",
        )
        .expect("valid");
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(rules);
        let host = Host::new(vec![(Addr::v4(S), Family::V4)]);
        let mut e = Engine::with_rules(Settings::default(), host, 1, rs);
        e.emit_output(true);
        e
    };
    let mut truncated = udp(C, S, 5000, 53, b"q");
    truncated.truncate(10);
    // An answer and a leaving datagram, then neither, malformed, dropped, and local.
    let packets = [
        (udp(C, [10, 0, 3, 3], 5000, 53, b"q"), Entry::Wire),
        (udp(C, [10, 0, 3, 3], 5000, 123, b"t"), Entry::Wire),
        (truncated, Entry::Wire),
        (tcp(C, [10, 0, 3, 3], 40000, 22, 0x02, 1, 0), Entry::Wire),
        (udp(C, [10, 0, 3, 3], 5000, 53, b"q"), Entry::Wire),
        (udp(S, C, 53, 5000, b"a"), Entry::Host),
        (udp(C, S, 5000, 53, b"q"), Entry::Wire),
    ];
    let (mut made, mut reused) = (engine(), engine());
    let mut out = Outcome::default();
    let mut answered = 0;
    for (i, (p, entry)) in packets.iter().enumerate() {
        let now = i as u64 * SEC;
        let fresh = made.process(p, *entry, now);
        reused.process_into(p, *entry, now, &mut out);
        assert_eq!(out, fresh, "packet {i}");
        answered += usize::from(fresh.reply.is_some());
    }
    assert!(answered > 0, "a REJECT answered");
    assert_eq!(made.counts(), reused.counts());
}

/// A connection's way through the hooks is kept once its packet in a direction and state
/// met only empty chains and kept walks, and its next packets take it again (`udp4_fast`)
/// with the counters and outcomes of the hooks; a forwarded packet whose TTL runs out does
/// not take it, and is dropped before FORWARD as with the hooks.
#[test]
fn a_kept_path_is_taken_as_the_hooks_would_take_it() {
    let engine = |remember: bool| {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
                    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -s 10.9.0.0/16 -j DROP\n\
                    -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT\nCOMMIT\n";
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(text, "path.rules").expect("valid"));
        let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
        e.remember_walks(remember);
        e
    };
    let q = udp(C, S, 5000, 53, b"q");
    let a = udp(S, C, 53, 5000, b"a");
    let packets = [&q, &q, &q, &a, &a, &q, &q, &with_ttl(q.clone(), 1), &q];
    let run = |e: &mut Engine| -> Vec<Outcome> {
        (0..packets.len())
            .map(|i| e.process(packets[i], Entry::Wire, i as u64 * SEC))
            .collect()
    };
    let (mut kept, mut walked) = (engine(true), engine(false));
    let outcomes = run(&mut kept);
    assert_eq!(outcomes, run(&mut walked));
    assert_eq!(
        outcomes.iter().map(|o| o.fate).collect::<Vec<_>>(),
        [
            [Fate::Forwarded; 7].as_slice(),
            &[Fate::Dropped(DropReason::TtlExceeded), Fate::Forwarded]
        ]
        .concat()
    );
    assert_eq!(all_counters(kept.rules()), all_counters(walked.rules()));
    assert_eq!(kept.counts(), walked.counts());
    assert_eq!(listing(&kept, 9 * SEC), listing(&walked, 9 * SEC));
    // NEW before the answer, ESTABLISHED in reply, ESTABLISHED: three ways kept, one path
    // through the same chains for all.
    assert_eq!(kept.memo.distinct_paths(), 1);
    assert_eq!(walked.memo.distinct_paths(), 0);
}

/// A TCP connection's ways through the hooks are kept after conntrack's general path, as a
/// UDP one's after its fast path: the handshake, data both ways, a segment out of the
/// window (INVALID, through the hooks), the close; every outcome, counter and entry as
/// with the hooks walked every time.
#[test]
fn a_tcp_connection_takes_its_kept_ways_as_the_hooks_would() {
    let engine = |remember: bool| {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A PREROUTING -p udp --dport 9 -j DROP\nCOMMIT\n\
                    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
                    -A FORWARD -p tcp --dport 80 -j ACCEPT\n\
                    -A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n";
        let mut rs = ctrack_rules::Ruleset::default();
        rs.add(ctrack_rules::load(text, "tcp-path.rules").expect("valid"));
        let mut e = Engine::with_rules(Settings::default(), Host::default(), 1, rs);
        e.remember_walks(remember);
        e.conntrack_mut().record_events(true);
        e
    };
    let (ack, psh_ack, fin_ack) = (0x10, 0x18, 0x11);
    let mut segments = vec![
        tcp(C, S, 40000, 80, 0x02, 100, 0),
        tcp(S, C, 80, 40000, 0x12, 500, 101),
        tcp(C, S, 40000, 80, ack, 101, 501),
    ];
    for _ in 0..4 {
        segments.push(tcp(C, S, 40000, 80, psh_ack, 101, 501));
        segments.push(tcp(S, C, 80, 40000, psh_ack, 501, 101));
    }
    // Far out of the window: INVALID, dropped by the first rule.
    segments.push(tcp(C, S, 40000, 80, ack, 2_000_000_000, 501));
    segments.push(tcp(C, S, 40000, 80, fin_ack, 101, 501));
    segments.push(tcp(S, C, 80, 40000, fin_ack, 501, 102));
    segments.push(tcp(C, S, 40000, 80, ack, 102, 502));
    let run = |e: &mut Engine| -> Vec<Outcome> {
        segments
            .iter()
            .enumerate()
            .map(|(i, p)| e.process(p, Entry::Wire, i as u64 * 1000))
            .collect()
    };
    let (mut kept, mut walked) = (engine(true), engine(false));
    let outcomes = run(&mut kept);
    assert_eq!(outcomes, run(&mut walked));
    assert!(
        outcomes.iter().any(|o| matches!(o.fate, Fate::Dropped(_))),
        "the INVALID segment is dropped"
    );
    assert_eq!(all_counters(kept.rules()), all_counters(walked.rules()));
    assert_eq!(kept.counts(), walked.counts());
    assert_eq!(listing(&kept, SEC), listing(&walked, SEC));
    let events = |e: &mut Engine| -> Vec<String> {
        let events = e.conntrack_mut().take_events();
        events.iter().map(|ev| format!("{ev:?}")).collect()
    };
    let made = events(&mut kept);
    // NEW, two UPDATEs of the handshake, three of the close.
    assert!(made.len() >= 6, "{made:#?}");
    assert_eq!(made, events(&mut walked));
    assert!(kept.memo.distinct_paths() >= 1, "a way kept");
}

#[test]
fn loopback_addresses_from_the_wire_are_martians_conntrack_met() {
    const LO: [u8; 4] = [127, 0, 0, 1];
    let mut e = Engine::new(acct(), Host::default(), 1);
    let syn = tcp(LO, LO, 40000, 7000, 0x02, 100, 0);
    let o = e.process(&syn, Entry::Wire, 0);
    assert_eq!(
        o.fate,
        Fate::Dropped(DropReason::Address("martian destination"))
    );
    assert!(matches!(o.state, PacketState::Tracked(_)));
    // A SYN/ACK without a connection: conntrack called it INVALID before the routing.
    let o = e.process(&tcp(LO, LO, 7000, 40000, 0x12, 500, 101), Entry::Wire, SEC);
    assert_eq!(o.state, PacketState::Invalid);
    assert_eq!(e.conntrack().stats().invalid, 1);
    let o = e.process(&udp(LO, S, 5000, 53, b"q"), Entry::Wire, SEC);
    assert_eq!(o.fate, Fate::Dropped(DropReason::Address("martian source")));
    assert_eq!((e.conntrack().count(), e.counts().address_drops), (0, 3));
    // The host's own packet to itself over lo: tracked at OUTPUT, delivered.
    let o = e.process(&syn, Entry::Host, 2 * SEC);
    assert_eq!(o.fate, Fate::Delivered);
    assert_eq!(e.conntrack().count(), 1);
    assert_eq!(e.host().route(Addr::v4([127, 1, 2, 3]), Family::V4), "lo");
}

#[test]
fn ipv6_loopback_from_the_wire_is_dropped_before_netfilter() {
    let lo6 = std::net::Ipv6Addr::LOCALHOST.octets();
    let other = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .expect("address")
        .octets();
    let mut e = Engine::new(acct(), Host::default(), 1);
    // A SYN/ACK conntrack would call INVALID: it never gets to see it.
    let mut t = vec![0u8; 20];
    t[12] = 5 << 4;
    t[13] = 0x12;
    for (src, dst) in [(lo6, other), (other, lo6)] {
        let o = e.process(&crate::workload::ipv6(src, dst, 6, &t), Entry::Wire, 0);
        assert_eq!(
            o.fate,
            Fate::Dropped(DropReason::Address("loopback address"))
        );
    }
    assert_eq!(e.conntrack().stats().invalid, 0);
    assert_eq!(e.counts().address_drops, 2);
    let o = e.process(&crate::workload::ipv6(lo6, lo6, 6, &t), Entry::Host, 0);
    assert_eq!(o.state, PacketState::Invalid);
}

#[test]
fn multicast_from_the_wire_is_taken_in_only_for_a_joined_group() {
    let mut e = Engine::new(acct(), Host::default(), 1);
    let o = e.process(&udp(C, [224, 0, 0, 251], 5353, 5353, b"q"), Entry::Wire, 0);
    assert_eq!(
        o.fate,
        Fate::Dropped(DropReason::Address("multicast group not joined"))
    );
    assert!(matches!(o.state, PacketState::Tracked(_)));
    assert_eq!(e.conntrack().count(), 0);
    for dst in [[224, 0, 0, 1], [255, 255, 255, 255]] {
        let o = e.process(&udp(C, dst, 40000, 9999, b"q"), Entry::Wire, 0);
        assert_eq!(o.fate, Fate::Delivered);
    }
    assert_eq!(e.conntrack().count(), 2);
    let six = |a: &str| a.parse::<std::net::Ipv6Addr>().expect("address").octets();
    let datagram = |dst| {
        crate::workload::ipv6(
            six("2001:db8::5"),
            six(dst),
            17,
            &udp_segment(40000, 9999, b"q"),
        )
    };
    let o = e.process(&datagram("ff02::fb"), Entry::Wire, 0);
    assert_eq!(
        o.fate,
        Fate::Dropped(DropReason::Address("multicast group not joined"))
    );
    assert_eq!(
        e.process(&datagram("ff02::1"), Entry::Wire, 0).fate,
        Fate::Delivered
    );
    assert_eq!(e.conntrack().count(), 3);
    // A subnet's broadcast address is the host's where one of its interfaces is on it.
    let iface = Iface {
        name: "eth0".into(),
        addr: Addr::v4([10, 0, 1, 1]),
        prefix: 24,
        family: Family::V4,
    };
    let mut e = Engine::new(acct(), Host::default().with_ifaces(vec![iface]), 1);
    let o = e.process(&udp(C, [10, 0, 1, 255], 40000, 9999, b"q"), Entry::Wire, 0);
    assert_eq!(o.fate, Fate::Delivered);
    let o = e.process(&udp(C, [10, 0, 2, 255], 40000, 9999, b"q"), Entry::Wire, 0);
    assert_eq!(o.fate, Fate::Forwarded);
    // An interface without an address of its own has no broadcast.
    let bare = Iface {
        name: "eth0".into(),
        addr: Addr::default(),
        prefix: 0,
        family: Family::V4,
    };
    let mut e = Engine::new(acct(), Host::default().with_ifaces(vec![bare]), 1);
    let o = e.process(&udp(C, [10, 0, 1, 255], 40000, 9999, b"q"), Entry::Wire, 0);
    assert_eq!(o.fate, Fate::Forwarded);
}
