//! A walk with the records of `Ruleset::compile` decides, counts and stops exactly where a
//! walk without them does, on random rulesets and packets of both families; and a walk makes
//! the packet's whole context only when a rule or target needs it.

use ctrack_conntrack::proto::ProtoState;
use ctrack_conntrack::status::ips;
use ctrack_conntrack::{Conn, CtInfo, PacketState};
use ctrack_packet::{checksum, Addr, Datagram, Family, Tuple};
use ctrack_rules::ctx::{HostInfo, LazyCtx, PacketCtx};
use ctrack_rules::{Backend, Decision, Effects, Ruleset};
use proptest::prelude::*;

/// A host with no addresses of its own.
struct NoHost;

impl HostInfo for NoHost {
    fn addr_type(&self, _: Addr, _: Family) -> u16 {
        ctrack_rules::ctx::addrtype::UNICAST
    }
}

/// Addresses of the packets and networks of the rules, by family: the networks overlap the
/// addresses in every way (hit, miss, /0, host route).
fn addrs(f: Family) -> (&'static [&'static str], &'static [&'static str]) {
    match f {
        Family::V4 => (
            &["10.0.0.1", "10.0.1.1", "192.0.2.7", "192.0.2.200"],
            &[
                "10.0.0.0/8",
                "10.0.0.1/32",
                "10.0.1.0/24",
                "192.0.2.0/24",
                "0.0.0.0/0",
            ],
        ),
        Family::V6 => (
            &["2001:db8::1", "2001:db8:1::1", "fd00::7", "fd00::c8"],
            &[
                "2001:db8::/32",
                "2001:db8::1/128",
                "2001:db8:1::/48",
                "fd00::/8",
                "::/0",
            ],
        ),
    }
}

/// One generated rule, as indexes into small choices.
#[derive(Clone, Debug)]
struct Gen {
    src: Option<(usize, bool)>,
    dst: Option<(usize, bool)>,
    proto: Option<(usize, bool)>,
    iface: Option<bool>,
    state: Option<(usize, usize, bool)>,
    target: usize,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of((0..5usize, any::<bool>())),
        proptest::option::of((0..5usize, any::<bool>())),
        proptest::option::of((0..4usize, any::<bool>())),
        proptest::option::of(any::<bool>()),
        proptest::option::of((0..3usize, 0..5usize, any::<bool>())),
        0..6usize,
    )
        .prop_map(|(src, dst, proto, iface, state, target)| Gen {
            src,
            dst,
            proto,
            iface,
            state,
            target,
        })
}

fn rule_text(chain: &str, g: &Gen, f: Family, user: bool) -> String {
    let (_, nets) = addrs(f);
    let not = |i: bool| if i { "! " } else { "" };
    let mut s = format!("-A {chain}");
    if let Some((n, i)) = g.src {
        s += &format!(" {}-s {}", not(i), nets[n]);
    }
    if let Some((n, i)) = g.dst {
        s += &format!(" {}-d {}", not(i), nets[n]);
    }
    if let Some((p, i)) = g.proto {
        // `! -p all` is refused by iptables; `all` is written only plain.
        let name = [
            "udp",
            "tcp",
            if f == Family::V4 { "icmp" } else { "ipv6-icmp" },
            "all",
        ][p];
        s += &format!(" {}-p {name}", not(i && p != 3));
    }
    if let Some(i) = g.iface {
        s += &format!(" {}-i eth0", not(i));
    }
    let states = [
        "NEW",
        "RELATED,ESTABLISHED",
        "INVALID,UNTRACKED,NEW",
        "ESTABLISHED",
        "DNAT",
    ];
    if let Some((kind, st, i)) = g.state {
        s += &match kind {
            // `-m state` has no DNAT.
            0 => format!(" -m state {}--state {}", not(i), states[st.min(3)]),
            1 => format!(" -m conntrack {}--ctstate {}", not(i), states[st]),
            _ => format!(
                " -m conntrack {}--ctstate {} --ctdir ORIGINAL",
                not(i),
                states[st]
            ),
        };
    }
    let targets = ["-j ACCEPT", "-j DROP", "-j RETURN", "", "-j U", "-g U"];
    // The user chain jumps nowhere: a loop would be refused.
    let t = if user && g.target >= 4 {
        "-j RETURN"
    } else {
        targets[g.target]
    };
    if !t.is_empty() {
        s += " ";
        s += t;
    }
    s + "\n"
}

fn ruleset(f: Family, forward: &[Gen], user: &[Gen]) -> String {
    let mut t = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:U - [0:0]\n",
    );
    for g in forward {
        t += &rule_text("FORWARD", g, f, false);
    }
    for g in user {
        t += &rule_text("U", g, f, true);
    }
    t + "COMMIT\n"
}

/// An IP datagram of `proto` (UDP, TCP or ICMP) from `src` to `dst`.
fn datagram(f: Family, src: &str, dst: &str, proto: usize) -> Vec<u8> {
    let (proto, l4): (u8, Vec<u8>) = match (proto, f) {
        (0, _) => (17, vec![0x30, 0x39, 0, 53, 0, 8, 0, 0]),
        (1, _) => (
            6,
            [
                &[0x30, 0x39, 0, 80][..],
                &[0; 8],
                &[0x50, 0x10, 1, 0, 0, 0, 0, 0],
            ]
            .concat(),
        ),
        (_, Family::V4) => (1, vec![8, 0, 0, 0, 0, 1, 0, 1]),
        (_, Family::V6) => (58, vec![128, 0, 0, 0, 0, 1, 0, 1]),
    };
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("a test address");
    match (ip(src), ip(dst)) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
            p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&l4);
            checksum::set_ipv4_header(&mut p[..20]);
            p
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
            p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&l4);
            p
        }
        _ => unreachable!("the pools are of one family each"),
    }
}

const STATES: [PacketState; 5] = [
    PacketState::Invalid,
    PacketState::Untracked,
    PacketState::Tracked(CtInfo::New),
    PacketState::Tracked(CtInfo::Related),
    PacketState::Tracked(CtInfo::EstablishedReply),
];

/// A packet: source and destination (indexes in the family's pool), protocol, state (in
/// [`STATES`]), whether it came in on eth0, and the `IPS_*` NAT bits of its connection
/// (`None`: no connection).
type Packet = (usize, usize, usize, usize, bool, Option<u32>);

/// What a walk decided of a packet, and the last rule it ran.
type Walked = (Decision, Option<(usize, usize)>);

/// A packet's whole context as these walks make it: in on `iif`, out on eth2, without a
/// tracker, counters or marks.
fn whole<'a, 'b>(
    packet: &'a Datagram<'b>,
    iif: &'a str,
    state: PacketState,
    conn: Option<&'a Conn>,
) -> PacketCtx<'a, 'b> {
    PacketCtx {
        packet,
        iif,
        oif: "eth2",
        state,
        conn,
        tracker: None,
        ct: None,
        counters: Default::default(),
        mark: 0,
        ct_mark: 0,
        now: 1,
        host: &NoHost,
        mac_header: None,
    }
}

/// Each packet's decision and last rule through `rules`, then the counters saved.
fn walk(rules: &mut Ruleset, f: Family, packets: &[Packet]) -> (Vec<Walked>, String) {
    let at = rules
        .family(f)
        .and_then(|r| r.locate("filter", "FORWARD"))
        .expect("FORWARD is there");
    let (pool, _) = addrs(f);
    let mut out = Vec::new();
    for &(s, d, proto, state, on_eth0, nat) in packets {
        let bytes = datagram(f, pool[s], pool[d], proto);
        let dg = Datagram::parse(&bytes).expect("a well-formed datagram");
        let conn = nat.map(|status| Conn {
            original: Tuple::from_datagram(&dg).expect("a tuple"),
            status,
            deadline: 0,
            mark: 0,
            zone: 0,
            proto: ProtoState::Generic,
            id: 0,
            events: 0,
            helper: None,
            rare: Conn::NO_RARE,
            extras: Conn::NO_EXTRAS,
        });
        let iif = if on_eth0 { "eth0" } else { "eth1" };
        let mut make = || whole(&dg, iif, STATES[state], conn.as_ref());
        let status = conn.as_ref().map_or(0, |c| c.status);
        let mut p = LazyCtx::new(&dg, STATES[state], status, &mut make);
        let mut fx = Effects::default();
        let decision = rules.evaluate_at(at, &mut p, &mut fx);
        out.push((decision, fx.last_rule));
    }
    let saved = rules.family(f).expect("loaded").save(true, Backend::Nft);
    (out, saved)
}

fn same_walks(
    f: Family,
    forward: Vec<Gen>,
    user: Vec<Gen>,
    packets: Vec<Packet>,
) -> Result<(), TestCaseError> {
    let text = ruleset(f, &forward, &user);
    let loaded = ctrack_rules::load_as(&text, "random.rules", f)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    let mut plain = Ruleset::default();
    plain.add(loaded.clone());
    let mut compiled = Ruleset::default();
    compiled.add(loaded);
    compiled.compile();
    let a = walk(&mut plain, f, &packets);
    let b = walk(&mut compiled, f, &packets);
    prop_assert_eq!(a, b, "{}", text);
    Ok(())
}

fn packets() -> impl Strategy<Value = Vec<Packet>> {
    let nat = proptest::option::of(prop_oneof![
        Just(0),
        Just(ips::SRC_NAT),
        Just(ips::DST_NAT),
        Just(ips::SRC_NAT | ips::DST_NAT)
    ]);
    proptest::collection::vec(
        (
            0..4usize,
            0..4usize,
            0..3usize,
            0..5usize,
            any::<bool>(),
            nat,
        ),
        1..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn ipv4_walks_decide_the_same_with_records(
        forward in proptest::collection::vec(gen(), 0..12),
        user in proptest::collection::vec(gen(), 0..5),
        packets in packets(),
    ) {
        same_walks(Family::V4, forward, user, packets)?;
    }

    #[test]
    fn ipv6_walks_decide_the_same_with_records(
        forward in proptest::collection::vec(gen(), 0..12),
        user in proptest::collection::vec(gen(), 0..5),
        packets in packets(),
    ) {
        same_walks(Family::V6, forward, user, packets)?;
    }
}

/// The records are worth testing against: on a ruleset where they turn most rules away, the
/// counters show the walks did reach the rules that match.
#[test]
fn records_pass_over_rules_that_cannot_match_and_count_those_that_do() {
    let text = "*filter\n:FORWARD DROP [0:0]\n\
        -A FORWARD -s 192.0.2.0/24 -p udp -j DROP\n\
        -A FORWARD -d 10.9.0.0/16 -j RETURN\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        COMMIT\n";
    let mut rules = Ruleset::default();
    rules.add(ctrack_rules::load(text, "t.rules").expect("valid"));
    rules.compile();
    let (walks, saved) = walk(
        &mut rules,
        Family::V4,
        &[
            (0, 3, 0, 4, false, None),
            (2, 3, 0, 4, false, None),
            (0, 3, 1, 2, false, None),
        ],
    );
    assert_eq!(
        walks[0].0,
        Decision::Accept,
        "10.0.0.1 established passes the state rule"
    );
    assert!(
        matches!(walks[1].0, Decision::Drop { rule: Some(0), .. }),
        "192.0.2.7 UDP is dropped"
    );
    assert!(
        matches!(walks[2].0, Decision::Drop { rule: None, .. }),
        "a NEW packet meets the policy"
    );
    assert!(
        saved.contains("[1:28] -A FORWARD -s 192.0.2.0/24 -p udp -j DROP"),
        "{saved}"
    );
    assert!(
        saved.contains("[1:28] -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        "{saved}"
    );
}

/// What one walk of FORWARD decided, and the packet mark if it made the whole context.
fn lazy_walk(text: &str, state: PacketState) -> (Decision, Option<u32>) {
    let mut rules = Ruleset::default();
    rules.add(ctrack_rules::load(text, "lazy.rules").expect("a valid ruleset"));
    rules.compile();
    let at = rules
        .family(Family::V4)
        .and_then(|r| r.locate("filter", "FORWARD"))
        .expect("FORWARD is there");
    let bytes = datagram(Family::V4, "10.0.0.1", "192.0.2.7", 0);
    let dg = Datagram::parse(&bytes).expect("a well-formed datagram");
    let mut make = || whole(&dg, "eth0", state, None);
    let mut p = LazyCtx::new(&dg, state, 0, &mut make);
    let decision = rules.evaluate_at(at, &mut p, &mut Effects::default());
    let mark = p.made().map(|c| c.mark);
    (decision, mark)
}

#[test]
fn the_whole_context_is_made_only_for_a_rule_or_target_that_needs_it() {
    let established = PacketState::Tracked(CtInfo::Established);
    let head = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    let by_records = format!(
        "{head}-A FORWARD -s 192.0.2.0/24 -p udp -j DROP\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"
    );
    assert_eq!(
        lazy_walk(&by_records, established),
        (Decision::Accept, None),
        "addresses, protocol and state decide without the context"
    );
    let by_iface = format!("{head}-A FORWARD -i eth0 -j ACCEPT\nCOMMIT\n");
    assert_eq!(
        lazy_walk(&by_iface, established),
        (Decision::Accept, Some(0)),
        "an interface test needs the context"
    );
    let by_mark = format!(
        "{head}-A FORWARD -p udp -j MARK --set-xmark 0x7/0xffffffff\n\
         -A FORWARD -m mark --mark 0x7 -j ACCEPT\nCOMMIT\n"
    );
    assert_eq!(
        lazy_walk(&by_mark, established),
        (Decision::Accept, Some(7)),
        "MARK sets the mark in the context it makes, and the next rule sees it"
    );
    let new = PacketState::Tracked(CtInfo::New);
    assert!(
        matches!(
            lazy_walk(&by_records, new),
            (Decision::Drop { rule: None, .. }, None)
        ),
        "a NEW packet meets the policy, still without the context"
    );
}
