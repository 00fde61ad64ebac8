//! NAT bindings: the reply tuple a translation gives a new connection (`nf_nat_setup_info`,
//! `get_unique_tuple`).
//!
//! A source translation keeps the original source when it is in the range and the reply
//! tuple it gives is free; otherwise it picks an address in the range (the kernel's
//! deterministic hash for ranges of several addresses) and, on a clash or when ports are
//! given, a port from the range starting at a pseudo-random offset, as the kernel does with
//! `get_random_u16()` (ctrack's generator is seeded, so runs repeat).

use crate::status::ips;
use ctrack_packet::{Addr, Family, Tuple};

/// Which end a translation rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manip {
    /// The source (SNAT, MASQUERADE).
    Src,
    /// The destination (DNAT, REDIRECT).
    Dst,
}

/// A translation range (`struct nf_nat_range2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRange {
    /// Lowest and highest address; `None` keeps the address.
    pub addrs: Option<(Addr, Addr)>,
    /// Lowest and highest port; `None` when no port was given.
    pub ports: Option<(u16, u16)>,
    /// `--random`/`--random-fully`: never keep the original port.
    pub random: bool,
    /// `--persistent`: the same client always gets the same address.
    pub persistent: bool,
}

fn has_ports(t: &Tuple) -> bool {
    matches!(t.proto, 6 | 17 | 136 | 132 | 33)
}

fn addr_in(a: Addr, lo: Addr, hi: Addr) -> bool {
    lo.0 <= a.0 && a.0 <= hi.0
}

/// The original-direction tuple as it looks after the translation (source or destination
/// replaced), for a candidate address and port.
fn manip(t: &Tuple, m: Manip, addr: Addr, port: Option<u16>) -> Tuple {
    let mut n = *t;
    match m {
        Manip::Src => {
            n.src = addr;
            if let Some(p) = port {
                n.src_port = p;
            }
        }
        Manip::Dst => {
            n.dst = addr;
            if let Some(p) = port {
                n.dst_port = p;
            }
        }
    }
    n
}

/// The kernel's `jhash2` over 32-bit words (Bob Jenkins' lookup3), used to pick an
/// address from a range.
fn jhash2(k: &[u32], initval: u32) -> u32 {
    let rot = |x: u32, k: u32| x.rotate_left(k);
    let mut a = 0xdead_beefu32
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        a = a.wrapping_sub(c);
        a ^= rot(c, 4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= rot(a, 6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= rot(b, 8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= rot(c, 16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= rot(a, 19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= rot(b, 4);
        b = b.wrapping_add(a);
        k = &k[3..];
    }
    if k.is_empty() {
        return c;
    }
    if k.len() >= 3 {
        c = c.wrapping_add(k[2]);
    }
    if k.len() >= 2 {
        b = b.wrapping_add(k[1]);
    }
    a = a.wrapping_add(k[0]);
    c ^= b;
    c = c.wrapping_sub(rot(b, 14));
    a ^= c;
    a = a.wrapping_sub(rot(c, 11));
    b ^= a;
    b = b.wrapping_sub(rot(a, 25));
    c ^= b;
    c = c.wrapping_sub(rot(b, 16));
    a ^= c;
    a = a.wrapping_sub(rot(c, 4));
    b ^= a;
    b = b.wrapping_sub(rot(a, 14));
    c ^= b;
    c = c.wrapping_sub(rot(b, 24));
    c
}

fn words(a: &Addr, f: Family) -> Vec<u32> {
    let n = if f == Family::V4 { 1 } else { 4 };
    (0..n)
        .map(|i| u32::from_be_bytes([a.0[i * 4], a.0[i * 4 + 1], a.0[i * 4 + 2], a.0[i * 4 + 3]]))
        .collect()
}

/// `find_best_ips_proto`: the address of the range for this connection.
fn best_addr(t: &Tuple, m: Manip, r: &NatRange) -> Addr {
    let Some((lo, hi)) = r.addrs else {
        return if m == Manip::Src { t.src } else { t.dst };
    };
    if lo == hi {
        return lo;
    }
    let f = t.family;
    let (lo_w, hi_w) = (words(&lo, f), words(&hi, f));
    // The hash covers the source; with --persistent the destination is left out.
    let dst_w = words(&t.dst, f);
    let init = if r.persistent {
        0
    } else {
        *dst_w.last().unwrap_or(&0)
    };
    let src_w = words(&t.src, f);
    let j = jhash2(&src_w, init);
    let mut out = lo;
    // Only the last word varies in practice; the kernel spreads the others alike.
    let last = lo_w.len() - 1;
    let (min, max) = (lo_w[last], hi_w[last]);
    let dist = u64::from(max.wrapping_sub(min)) + 1;
    let v = min.wrapping_add(((u64::from(j) * dist) >> 32) as u32);
    out.0[last * 4..last * 4 + 4].copy_from_slice(&v.to_be_bytes());
    out
}

/// A small seeded generator standing in for the kernel's `get_random_u16`.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// The next 16 random bits.
    pub fn u16(&mut self) -> u16 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u16
    }
}

/// Finds the translated original-direction tuple (`get_unique_tuple`). `taken` says
/// whether a reply tuple belongs to another connection already.
pub fn unique_tuple(
    orig: &Tuple,
    m: Manip,
    r: &NatRange,
    rng: &mut Rng,
    taken: &dyn Fn(&Tuple) -> bool,
) -> Tuple {
    let free = |t: &Tuple| t.invert().is_none_or(|rep| !taken(&rep));
    let in_range = |t: &Tuple| {
        let (a, p) = match m {
            Manip::Src => (t.src, t.src_port),
            Manip::Dst => (t.dst, t.dst_port),
        };
        r.addrs.is_none_or(|(lo, hi)| addr_in(a, lo, hi))
            && (!has_ports(t) || r.ports.is_none_or(|(lo, hi)| lo <= p && p <= hi))
    };
    // The original source, when it fits and is free.
    if m == Manip::Src && !r.random && in_range(orig) && free(orig) {
        return *orig;
    }
    let mut t = manip(orig, m, best_addr(orig, m, r), None);
    if !r.random {
        match r.ports {
            Some((lo, hi)) if has_ports(&t) => {
                let p = if m == Manip::Src {
                    t.src_port
                } else {
                    t.dst_port
                };
                if lo <= p && p <= hi && (lo == hi || free(&t)) {
                    return t;
                }
            }
            _ => {
                if free(&t) {
                    return t;
                }
            }
        }
    }
    if !has_ports(&t) {
        return t;
    }
    // nf_nat_l4proto_unique_tuple.
    let key = if m == Manip::Src {
        t.src_port
    } else {
        t.dst_port
    };
    let (min, size) = match r.ports {
        Some((lo, hi)) => (
            u32::from(lo.min(hi)),
            u32::from(hi.max(lo)) - u32::from(lo.min(hi)) + 1,
        ),
        None if m == Manip::Dst => return t,
        None if key < 512 => (1, 511),
        None if key < 1024 => (600, 424),
        None => (1024, 65535 - 1024 + 1),
    };
    let mut off = if r.ports.is_some() && m == Manip::Dst && !r.random {
        0
    } else {
        u32::from(rng.u16())
    };
    let attempts = size.min(128);
    for _ in 0..attempts {
        let p = (min + off % size) as u16;
        let cand = manip(&t, m, if m == Manip::Src { t.src } else { t.dst }, Some(p));
        if free(&cand) {
            return cand;
        }
        off = off.wrapping_add(1);
    }
    t = manip(
        &t,
        m,
        if m == Manip::Src { t.src } else { t.dst },
        Some((min + off % size) as u16),
    );
    t
}

/// The status bit a translation sets when it changed the tuple.
pub fn status_bit(m: Manip) -> u32 {
    match m {
        Manip::Src => ips::SRC_NAT,
        Manip::Dst => ips::DST_NAT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Tuple {
        Tuple {
            src: Addr::v4(src),
            dst: Addr::v4(dst),
            src_port: sp,
            dst_port: dp,
            proto: 17,
            family: Family::V4,
        }
    }

    #[test]
    fn snat_keeps_the_port_when_free_and_remaps_on_clash() {
        let orig = t([10, 0, 0, 2], 5000, [8, 8, 8, 8], 53);
        let to = Addr::v4([192, 0, 2, 1]);
        let r = NatRange {
            addrs: Some((to, to)),
            ports: None,
            random: false,
            persistent: false,
        };
        let mut rng = Rng::new(1);
        let n = unique_tuple(&orig, Manip::Src, &r, &mut rng, &|_| false);
        assert_eq!((n.src, n.src_port), (to, 5000));
        let taken = t([8, 8, 8, 8], 53, [192, 0, 2, 1], 5000);
        let n = unique_tuple(&orig, Manip::Src, &r, &mut rng, &|x| *x == taken);
        assert_eq!(n.src, to);
        assert!(n.src_port >= 1024 && n.src_port != 5000);
    }

    #[test]
    fn dnat_with_a_port_maps_to_it() {
        let orig = t([10, 0, 0, 2], 5000, [192, 0, 2, 1], 8080);
        let to = Addr::v4([10, 9, 9, 9]);
        let r = NatRange {
            addrs: Some((to, to)),
            ports: Some((80, 80)),
            random: false,
            persistent: false,
        };
        let n = unique_tuple(&orig, Manip::Dst, &r, &mut Rng::new(1), &|_| false);
        assert_eq!((n.dst, n.dst_port, n.src_port), (to, 80, 5000));
    }

    #[test]
    fn jhash2_matches_known_values() {
        // lookup3's hashword() test vector: the empty key with initval 0 is 0xdeadbeef.
        assert_eq!(jhash2(&[], 0), 0xdead_beef);
    }
}
