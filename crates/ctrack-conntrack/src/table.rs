//! The hash table: entries in two slabs side by side (what a packet reads and writes, and
//! the rest), found through an open-addressed index. An entry keeps its original tuple; a
//! reply tuple NAT changed is kept in a store of its own with the other values few entries
//! have ([`Rare`]), and every other reply is the original's inverse.
//!
//! The kernel hashes both tuples of a connection (`tuplehash[ORIGINAL]` and
//! `tuplehash[REPLY]`). Here the hash is symmetric: a tuple and its inverse hash alike, so
//! one slot serves both directions of a connection whose reply is the original's inverse,
//! and only a connection NAT translated has a second slot, for its reply tuple. Which
//! direction a packet is in is told by comparing its tuple with the entry's.
//!
//! An index slot is eight bytes: the 32-bit keyed hash and the entry's node (entry index,
//! and which of its slots). A lookup reads one slot run of the index, usually one cache
//! line, compares hashes there and touches only the entry whose hash matches, where chained
//! buckets threaded through the entries read one entry after another. The index starts
//! sized to hold the entries it is told to expect at most three quarters full, and doubles
//! past that; deleting shifts the run back, so there are no tombstones.
//!
//! The kernel's buckets (`nf_conntrack_buckets`) are kept as a view, not as storage: a
//! tuple's bucket is its hash scaled like `reciprocal_scale`, and a slot's home is the same
//! hash scaled to the index, so one bucket's entries lie in one stretch of the index. Early
//! drop walks those buckets, and the table lists bucket by bucket, newest first, as
//! `/proc/net/nf_conntrack` does.

use crate::conn::{Conn, ExtStore, Rare};
use crate::huge::{Array, Slab};
use crate::status::ips;
use ctrack_packet::{Tuple, Udp4};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// Index slots an empty table starts with, at the least.
const MIN_SLOTS: usize = 64;
/// At most so many slots up front (256 MiB); a larger table grows into its size.
const MAX_PRESIZED: usize = 1 << 25;

/// What a packet reads and writes of an entry: the connection. Two cache lines, aligned
/// to a line, so a lookup brings in two.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Hot {
    conn: Conn,
}

// A connection that grows past 128 bytes makes every entry a line bigger, and every lookup
// brings in a line more.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Hot>() == 128);

/// The rest of an entry, in a slab of its own beside the hot one: the hash of its slot
/// (for its removal and the listing's order; a translated reply's slot is hashed again)
/// and when it came in (for the newest-first order of buckets), in 12 bytes.
#[derive(Clone, Copy)]
struct Cold {
    hash: u32,
    born: [u32; 2],
}

impl Cold {
    fn born(&self) -> u64 {
        u64::from(self.born[0]) << 32 | u64::from(self.born[1])
    }
}

/// The insertion order as a [`Cold`] keeps it.
fn born_parts(born: u64) -> [u32; 2] {
    [(born >> 32) as u32, born as u32]
}

/// What [`Table::find_udp4`] found.
pub(crate) enum Found<'t> {
    /// The entry at this index, in this direction (1 for the reply), and the connection.
    At(u32, usize, &'t mut Conn),
    /// No entry has the tuple.
    Missing,
    /// The general lookup must tell.
    Unsure,
}

/// The connection table.
pub struct Table {
    hot: Slab<Hot>,
    cold: Slab<Cold>,
    /// The values few entries have, NAT's reply tuples among them.
    rares: ExtStore<Rare>,
    free: Vec<u32>,
    /// `hash << 32 | (node + 1)`, node being `entry << 1 | slot` (1 for a translated reply's
    /// slot); 0 is empty.
    index: Array<u64>,
    /// Slots of `index` in use.
    nodes: usize,
    /// `64 - log2(index.len())`: a hash's home slot is its top bits.
    shift: u32,
    buckets: usize,
    len: usize,
    born: u64,
    key: (u64, u64),
    /// SipHash's state after the key is taken in, for the IPv4 keys' hash.
    keyed: [u64; 4],
}

impl Table {
    /// An empty table of `buckets` buckets, hashing with a key derived from `seed`, its
    /// index sized for `expected` entries (as the kernel allocates its buckets up front):
    /// it grows past them, but every doubling moves every slot once more.
    pub fn new(buckets: u32, expected: u32, seed: u64) -> Table {
        // The smallest power of two that holds them at three quarters full, one slot an
        // entry: between three eighths and three quarters full with all of them in.
        let expected = expected as usize;
        let slots = expected
            .saturating_add(expected.div_ceil(3))
            .clamp(MIN_SLOTS, MAX_PRESIZED)
            .next_power_of_two();
        let key = (
            seed ^ 0x736f_6d65_7073_6575,
            seed.rotate_left(32) ^ 0x646f_7261_6e64_6f6d,
        );
        Table {
            hot: Slab::default(),
            cold: Slab::default(),
            rares: ExtStore::default(),
            free: Vec::new(),
            index: Array::zeroed(slots),
            nodes: 0,
            shift: 32 - slots.trailing_zeros(),
            buckets: buckets.max(1) as usize,
            len: 0,
            born: 0,
            key,
            keyed: crate::siphash::keyed(key),
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is in the table.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buckets (`nf_conntrack_buckets`).
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// The keyed hash of a tuple in a zone: the same for the tuple's inverse
    /// ([`Tuple::invert`]), so that both directions of a connection meet at one slot.
    pub fn hash(&self, t: &Tuple, zone: u16) -> u32 {
        if let Some([m0, m1]) = v4_words(t, zone) {
            // Hashed without the streaming interface's buffering: its per-write bookkeeping
            // cost as much as the rounds on the hottest path.
            return crate::siphash::fifteen_bytes(&self.keyed, m0, m1) as u32;
        }
        let (sport, dport) = t.end_ports();
        let (a, b) = ((&t.src.0, sport), (&t.dst.0, dport));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut key = [0u8; 40];
        key[..16].copy_from_slice(lo.0);
        key[16..32].copy_from_slice(hi.0);
        key[32..34].copy_from_slice(&lo.1.to_ne_bytes());
        key[34..36].copy_from_slice(&hi.1.to_ne_bytes());
        key[36..40].copy_from_slice(&key_tail(t, zone).to_ne_bytes());
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(&key);
        h.finish() as u32
    }

    /// [`Table::hash`] of four tuples in a zone, as a batch's first pass asks: four IPv4
    /// tuples are hashed at once.
    pub fn hash4(&self, t: [&Tuple; 4], zone: u16) -> [u32; 4] {
        match t.map(|t| v4_words(t, zone)) {
            [Some(a), Some(b), Some(c), Some(d)] => {
                crate::siphash::fifteen_bytes_x4(&self.keyed, [a, b, c, d]).map(|h| h as u32)
            }
            _ => t.map(|t| self.hash(t, zone)),
        }
    }

    /// The bucket of a hash, scaled as the kernel's `reciprocal_scale`.
    pub fn bucket_of_hash(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.buckets as u64) >> 32) as usize
    }

    /// The bucket a tuple hashes to.
    pub fn bucket_of(&self, t: &Tuple, zone: u16) -> usize {
        self.bucket_of_hash(self.hash(t, zone))
    }

    fn home(&self, hash: u32) -> usize {
        (u64::from(hash) >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    /// Asks for the index slot of a hash to be brought toward the cache, ahead of a lookup:
    /// a hint that changes no result.
    // Inlined, and the slot's address made without a bounds check (a hash's home is in the
    // index, and a prefetch never faults): out of line it cost a batch's packet 11
    // instructions.
    #[inline]
    pub fn prefetch_slot(&self, hash: u32) {
        prefetch_ptr(
            self.index
                .as_ptr()
                .wrapping_add(self.home(hash))
                .cast::<u8>(),
        );
    }

    /// The same for the entry the index names first for this hash (its slot should be
    /// cached by now), if a slot holds the hash.
    pub fn prefetch_entry(&self, hash: u32) {
        let Some(e) = self
            .nodes_with(hash)
            .next()
            .and_then(|n| self.hot.get(node_entry(n)))
        else {
            return;
        };
        // Both lines of the entry's hot part: a packet's update reads and writes fields all
        // over it.
        let base = (e as *const Hot).cast::<u8>();
        for off in (0..std::mem::size_of::<Hot>()).step_by(64) {
            prefetch_ptr(base.wrapping_add(off));
        }
    }

    /// The nodes whose slots hold `hash`, in the order a probe from its home meets them.
    #[inline]
    fn nodes_with(&self, hash: u32) -> impl Iterator<Item = u32> + '_ {
        let mask = self.mask();
        let mut p = self.home(hash);
        std::iter::from_fn(move || loop {
            let s = self.index[p];
            if s == 0 {
                return None;
            }
            p = (p + 1) & mask;
            if (s >> 32) as u32 == hash {
                return Some(s as u32 - 1);
            }
        })
    }

    /// Finds the entry with this tuple in either direction: `(index, direction)`.
    #[inline]
    pub fn find(&self, t: &Tuple, zone: u16) -> Option<(u32, usize)> {
        self.find_hashed(t, zone, self.hash(t, zone))
    }

    /// [`Table::find`] with the tuple's hash already known.
    pub fn find_hashed(&self, t: &Tuple, zone: u16, hash: u32) -> Option<(u32, usize)> {
        self.nodes_with(hash).find_map(|n| {
            let i = node_entry(n);
            let c = &self.hot[i].conn;
            if c.zone != zone {
                return None;
            }
            // The slot does not say the direction: the original tuple is compared first,
            // the reply when the original is not it. A tuple that is its own inverse (the
            // same address and port at both ends) is a reply: the kernel puts the reply
            // tuple at the head of the chain after the original, so its lookup meets that.
            if c.original == *t {
                let both = t.src == t.dst && self.is_reply_of(c, t);
                Some((i as u32, usize::from(both)))
            } else {
                self.is_reply_of(c, t).then_some((i as u32, 1))
            }
        })
    }

    /// [`Table::hash`] of an IPv4/UDP tuple in zone 0 from its two ends, as
    /// [`Udp4::ends`](ctrack_packet::Udp4::ends) gives them.
    #[inline]
    pub(crate) fn hash_udp4(&self, (src, dst): (u64, u64)) -> u32 {
        let [m0, m1] = v4_key(src, dst, UDP4_TAIL);
        crate::siphash::fifteen_bytes(&self.keyed, m0, m1) as u32
    }

    /// [`Table::hash_udp4`] of four tuples at once.
    #[inline(always)]
    pub(crate) fn hash_udp4_x4(&self, ends: [(u64, u64); 4]) -> [u32; 4] {
        let words = ends.map(|(src, dst)| v4_key(src, dst, UDP4_TAIL));
        crate::siphash::fifteen_bytes_x4(&self.keyed, words).map(|h| h as u32)
    }

    /// [`Table::find_hashed`] of an IPv4/UDP tuple in zone 0, for the fast path: the same
    /// entry and direction, or [`Found::Unsure`] where the answer would take what the fast
    /// path leaves to the general one (an entry with rare values, a tuple that is its own
    /// inverse).
    // Always inlined: called from the one-by-one path, bursts and batches alike, the
    // compiler kept it and the x4 hash out of line, and a burst's packet cost 8 instructions
    // more, a batch's 42 (callgrind). The connection found is handed out with it: looked up
    // again by index, a packet cost the slab's two-level addressing twice.
    #[inline(always)]
    pub(crate) fn find_udp4(&mut self, u: &Udp4<'_>, hash: u32) -> Found<'_> {
        if u.to_itself() {
            return Found::Unsure;
        }
        let mut at = None;
        for n in self.nodes_with(hash) {
            let i = node_entry(n);
            let c = &self.hot[i].conn;
            if c.zone != 0 {
                continue;
            }
            match u.direction_in(&c.original) {
                Some(0) => {
                    at = Some((i, 0));
                    break;
                }
                // A reply NAT changed is kept with the rare values.
                _ if c.rare != Conn::NO_RARE => return Found::Unsure,
                Some(dir) => {
                    at = Some((i, dir));
                    break;
                }
                None => {}
            }
        }
        match at {
            Some((i, dir)) => Found::At(i as u32, dir, &mut self.hot[i].conn),
            None => Found::Missing,
        }
    }

    /// True when `t` is the reply tuple of `c`.
    fn is_reply_of(&self, c: &Conn, t: &Tuple) -> bool {
        match self.nat_reply(c) {
            Some(reply) => reply == t,
            None => t.is_inverse_of(&c.original),
        }
    }

    fn nat_reply(&self, c: &Conn) -> Option<&Tuple> {
        self.rares.get(c.rare).and_then(|r| r.nat_reply.as_ref())
    }

    /// Which entries the table has made, as a token that changes with each it makes: a
    /// tuple found in no entry is in none while this stays the same. Never zero, so that
    /// an optional one is eight bytes.
    pub(crate) fn generation(&self) -> std::num::NonZeroU64 {
        std::num::NonZeroU64::MIN.saturating_add(self.born)
    }

    /// Inserts a connection with its reply tuple: one slot, or two when the reply is not
    /// the original's inverse. Returns its index.
    pub fn insert(&mut self, conn: Conn, reply: Tuple) -> u32 {
        let original = self.hash(&conn.original, conn.zone);
        self.insert_hashed(&conn, &Rare::default(), &reply, original)
    }

    /// [`Table::insert`] of a connection with its rare values, the original tuple's hash
    /// known from the lookup that missed.
    // By reference, and the entry written once where it goes: a new connection's values
    // copied through the calls cost a store-forwarding stall a connection.
    pub fn insert_hashed(&mut self, conn: &Conn, rare: &Rare, reply: &Tuple, original: u32) -> u32 {
        debug_assert_eq!(original, self.hash(&conn.original, conn.zone));
        let mirrored = reply.is_inverse_of(&conn.original);
        // The inverse hashes as the original does: only a translated reply needs its own.
        let reply_hash = (!mirrored).then(|| self.hash(reply, conn.zone));
        let rare = Rare {
            nat_reply: (!mirrored).then_some(*reply),
            ..*rare
        };
        let conn = Conn {
            rare: if rare == Rare::default() {
                Conn::NO_RARE
            } else {
                self.rares.add(rare)
            },
            // What is in the table is confirmed, as in the kernel; the bit also tells a live
            // entry from a free one.
            status: conn.status | ips::CONFIRMED,
            ..*conn
        };
        self.born += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                self.hot[i as usize].conn = conn;
                let c = &mut self.cold[i as usize];
                c.hash = original;
                c.born = born_parts(self.born);
                i
            }
            None => {
                self.hot.push(Hot { conn });
                self.cold.push(Cold {
                    hash: original,
                    born: born_parts(self.born),
                });
                (self.hot.len() - 1) as u32
            }
        };
        let slots = 1 + usize::from(reply_hash.is_some());
        // Past three quarters full, runs grow long.
        if (self.nodes + slots) * 4 > self.index.len() * 3 {
            self.grow();
        }
        self.place(original, idx << 1);
        if let Some(h) = reply_hash {
            self.place(h, idx << 1 | 1);
        }
        self.nodes += slots;
        self.len += 1;
        idx
    }

    fn place(&mut self, hash: u32, node: u32) {
        let mask = self.mask();
        let mut p = self.home(hash);
        while self.index[p] != 0 {
            p = (p + 1) & mask;
        }
        self.index[p] = u64::from(hash) << 32 | u64::from(node + 1);
    }

    /// Doubles the index, when three quarters of its slots would hold a node.
    fn grow(&mut self) {
        let doubled = Array::zeroed(self.index.len() * 2);
        let old = std::mem::replace(&mut self.index, doubled);
        self.shift -= 1;
        for &s in old.iter().filter(|&&s| s != 0) {
            self.place((s >> 32) as u32, s as u32 - 1);
        }
    }

    /// Takes a node's slot out of the index, shifting the rest of its run back so every
    /// node stays reachable from its home.
    fn unplace(&mut self, hash: u32, node: u32) {
        let mask = self.mask();
        let want = u64::from(hash) << 32 | u64::from(node + 1);
        let mut hole = self.home(hash);
        while self.index[hole] != want {
            debug_assert!(self.index[hole] != 0, "node missing from the index");
            hole = (hole + 1) & mask;
        }
        let mut p = hole;
        loop {
            p = (p + 1) & mask;
            let s = self.index[p];
            if s == 0 {
                break;
            }
            // A node may fill the hole unless its home lies after the hole, up to where
            // it sits (cyclically).
            let home = self.home((s >> 32) as u32);
            let stays = if hole <= p {
                hole < home && home <= p
            } else {
                hole < home || home <= p
            };
            if !stays {
                self.index[hole] = s;
                hole = p;
            }
        }
        self.index[hole] = 0;
    }

    /// Removes an entry, returning it, its reply tuple and its rare values.
    pub fn remove(&mut self, idx: u32) -> (Conn, Tuple, Rare) {
        self.unplace(self.cold[idx as usize].hash, idx << 1);
        self.nodes -= 1;
        let c = &self.hot[idx as usize].conn;
        if let Some(h) = self.nat_reply(c).map(|reply| self.hash(reply, c.zone)) {
            self.unplace(h, idx << 1 | 1);
            self.nodes -= 1;
        }
        self.free.push(idx);
        self.len -= 1;
        let reply = self.reply(idx);
        let c = &mut self.hot[idx as usize].conn;
        let mut conn = *c;
        c.status &= !ips::CONFIRMED;
        // Its rare values' place is given back: the copy names none.
        let rare = self.rares.remove(conn.rare).unwrap_or_default();
        conn.rare = Conn::NO_RARE;
        (conn, reply, rare)
    }

    /// The rare values of the entry at an index, if it has any.
    pub fn rare(&self, idx: u32) -> Option<&Rare> {
        self.rares.get(self.hot[idx as usize].conn.rare)
    }

    /// The rare values of the entry at an index, mutably: the defaults given a place first
    /// if it has none.
    pub fn rare_mut(&mut self, idx: u32) -> &mut Rare {
        let c = &mut self.hot[idx as usize].conn;
        if c.rare == Conn::NO_RARE {
            c.rare = self.rares.add(Rare::default());
        }
        self.rares.get_mut(c.rare).expect("just given a place")
    }

    /// The reply tuple of the entry at an index.
    pub fn reply(&self, idx: u32) -> Tuple {
        let c = &self.hot[idx as usize].conn;
        match self.nat_reply(c) {
            Some(reply) => *reply,
            None => c.mirrored_reply(),
        }
    }

    /// Both tuples of the entry at an index: original and reply.
    pub fn tuples(&self, idx: u32) -> [Tuple; 2] {
        [self.hot[idx as usize].conn.original, self.reply(idx)]
    }

    /// The entry at an index.
    pub fn get(&self, idx: u32) -> &Conn {
        &self.hot[idx as usize].conn
    }

    /// The entry at an index, mutably.
    pub fn get_mut(&mut self, idx: u32) -> &mut Conn {
        &mut self.hot[idx as usize].conn
    }

    /// The live entry at an index; `None` when the index holds none.
    #[inline]
    pub fn get_live(&self, idx: u32) -> Option<&Conn> {
        self.hot
            .get(idx as usize)
            .map(|s| &s.conn)
            .filter(|c| c.confirmed())
    }

    /// The live entry at an index, mutably; `None` when the index holds none.
    #[inline]
    pub fn get_live_mut(&mut self, idx: u32) -> Option<&mut Conn> {
        self.hot
            .get_mut(idx as usize)
            .map(|s| &mut s.conn)
            .filter(|c| c.confirmed())
    }

    /// True when the index holds a live entry.
    pub fn is_live(&self, idx: u32) -> bool {
        self.get_live(idx).is_some()
    }

    /// Entries whose nodes are in bucket `b`, newest first as the kernel's chains are (a
    /// translated entry appears twice if both its slots hash here).
    pub fn bucket_entries(&self, b: usize, out: &mut Vec<u32>) {
        let start = out.len();
        // The hashes of bucket `b` are those from ceil(b * 2^32 / buckets) on.
        let lo = ((b as u64) << 32).div_ceil(self.buckets as u64);
        let hi = ((b as u64 + 1) << 32).div_ceil(self.buckets as u64);
        if lo >= hi {
            return;
        }
        let (first, last) = (self.home(lo as u32), self.home((hi - 1) as u32));
        let mask = self.mask();
        let mut p = first;
        let mut past_homes = false;
        for _ in 0..self.index.len() {
            let s = self.index[p];
            if s == 0 && past_homes {
                break;
            }
            if s != 0 && self.bucket_of_hash((s >> 32) as u32) == b {
                out.push((s as u32 - 1) >> 1);
            }
            if p == last {
                past_homes = true;
            }
            p = (p + 1) & mask;
        }
        out[start..].sort_by_key(|&i| std::cmp::Reverse(self.cold[i as usize].born()));
    }

    /// Every entry once, in no particular order: for counting and searching.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Conn)> + '_ {
        self.hot
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.confirmed())
            .map(|(i, s)| (i as u32, &s.conn))
    }

    /// Every entry once, in the order `/proc/net/nf_conntrack` lists them: bucket by bucket
    /// of the original tuple, newest first in each.
    pub fn iter_listing(&self) -> impl Iterator<Item = (u32, &Conn)> + '_ {
        let mut order: Vec<(usize, std::cmp::Reverse<u64>, u32)> = self
            .iter()
            .map(|(i, _)| {
                let c = &self.cold[i as usize];
                (self.bucket_of_hash(c.hash), std::cmp::Reverse(c.born()), i)
            })
            .collect();
        order.sort_unstable();
        order
            .into_iter()
            .map(move |(_, _, i)| (i, &self.hot[i as usize].conn))
    }
}

/// The entry index of an index node (`entry << 1 | direction`).
fn node_entry(node: u32) -> usize {
    (node >> 1) as usize
}

/// What an IPv6 tuple's 40-byte key ends with, beside its two ends: protocol, family and
/// zone (an IPv4 key ends with [`v4_tail`]).
fn key_tail(t: &Tuple, zone: u16) -> u32 {
    u32::from(t.proto) | u32::from(t.family.number()) << 8 | u32::from(zone) << 16
}

/// An IPv4 tuple's key as the 15 bytes [`crate::siphash::fifteen_bytes`] hashes: its two
/// ends, each an address and a port, in a fixed order whichever is the source, then its
/// protocol and zone (the family goes without saying: an IPv6 key is hashed apart). `None`
/// for IPv6.
#[inline]
fn v4_words(t: &Tuple, zone: u16) -> Option<[u64; 2]> {
    if t.family != ctrack_packet::Family::V4 {
        return None;
    }
    let (sport, dport) = t.end_ports();
    let end = |a: &ctrack_packet::Addr, port: u16| {
        u64::from(u32::from_be_bytes([a.0[0], a.0[1], a.0[2], a.0[3]])) << 16 | u64::from(port)
    };
    Some(v4_key(
        end(&t.src, sport),
        end(&t.dst, dport),
        v4_tail(t.proto, zone),
    ))
}

/// What an IPv4 key ends with, beside its two ends: protocol and zone, 24 bits.
fn v4_tail(proto: u8, zone: u16) -> u32 {
    u32::from(proto) | u32::from(zone) << 8
}

/// The [`v4_tail`] of an IPv4/UDP tuple in zone 0.
const UDP4_TAIL: u32 = ctrack_packet::proto::UDP as u32;

/// An IPv4 key from its ends (`address << 16 | port`, 48 bits each) and its 24-bit tail,
/// as its first eight bytes and its last seven.
#[inline]
fn v4_key(a: u64, b: u64, tail: u32) -> [u64; 2] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    [lo | hi << 48, hi >> 16 | u64::from(tail) << 32]
}

/// A prefetch hint for the first cache line of `bytes` (a packet's headers).
#[inline]
pub fn prefetch_bytes(bytes: &[u8]) {
    prefetch_ptr(bytes.as_ptr());
}

/// A prefetch hint for the cache line holding the byte at `p`, which need not be valid.
#[inline]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address, and reads nothing the
    // program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ProtoState;
    use ctrack_packet::{Addr, Family};
    use proptest::prelude::*;

    fn conn(src: u8, sport: u16, dst: u8, dport: u16, nat: bool) -> (Conn, Tuple) {
        let t = Tuple {
            src: Addr::v4([10, 0, 0, src]),
            dst: Addr::v4([10, 0, 1, dst]),
            src_port: sport,
            dst_port: dport,
            proto: 17,
            family: Family::V4,
        };
        let mut reply = t.invert().expect("UDP inverts");
        if nat {
            reply.dst = Addr::v4([192, 0, 2, src]);
        }
        let c = Conn {
            original: t,
            // As confirmation gives them to the table.
            status: ips::CONFIRMED,
            deadline: 0,
            mark: 0,
            zone: 0,
            proto: ProtoState::Generic,
            id: 0,
            events: 0,
            helper: None,
            rare: Conn::NO_RARE,
            extras: Conn::NO_EXTRAS,
        };
        (c, reply)
    }

    fn any_tuple() -> impl Strategy<Value = Tuple> {
        (
            any::<bool>(),
            prop::sample::select(vec![1u8, 6, 17, 47, 58, 132]),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(v6, proto, a, b, sport, dport)| {
                let (family, src, dst) = if v6 {
                    (Family::V6, Addr::v6(a), Addr::v6(b))
                } else {
                    let v4 = |x: [u8; 16]| Addr::v4([x[0], x[1], x[2], x[3]]);
                    (Family::V4, v4(a), v4(b))
                };
                // Mostly ICMP queries with replies (echo, timestamp, ...), some without.
                let dport = match (family, proto) {
                    (Family::V4, 1) => u16::from([8u8, 13, 15, 17, 3][usize::from(sport % 5)]) << 8,
                    (Family::V6, 58) => u16::from([128u8, 130, 1][usize::from(sport % 3)]) << 8,
                    _ => dport,
                };
                Tuple {
                    src,
                    dst,
                    src_port: sport,
                    dst_port: dport,
                    proto,
                    family,
                }
            })
    }

    proptest! {
        /// Four tuples hashed at once hash as each does alone, whatever their families:
        /// four IPv4 tuples go through the four-lane hash, any IPv6 one sends all four
        /// through the one-at-a-time hash.
        #[test]
        fn four_tuples_hash_as_each_alone(t in prop::array::uniform4(any_tuple()), zone in any::<u16>(), seed in any::<u64>()) {
            let table = Table::new(16, 0, seed);
            prop_assert_eq!(table.hash4([&t[0], &t[1], &t[2], &t[3]], zone), t.map(|t| table.hash(&t, zone)));
        }

        /// A tuple and its inverse hash alike, in every zone, so that one slot serves both
        /// directions; putting the ends in order loses nothing: another source port hashes
        /// apart.
        #[test]
        fn a_tuple_and_its_inverse_hash_alike(t in any_tuple(), zone in any::<u16>(), seed in any::<u64>()) {
            let table = Table::new(16, 0, seed);
            if let Some(inverse) = t.invert() {
                prop_assert_eq!(table.hash(&t, zone), table.hash(&inverse, zone));
            }
            // A chance collision of 32 bits under one key is let pass; under two keys at
            // once it would be the hash's fault.
            let mut other = t;
            other.src_port = t.src_port.wrapping_add(1);
            if other != t && !t.is_icmp() {
                let (a, b) = (table.hash(&t, zone), table.hash(&other, zone));
                let c = Table::new(16, 0, seed ^ 1);
                prop_assert!(a != b || c.hash(&t, zone) != c.hash(&other, zone));
            }
        }

        /// Inserts and removals in any order leave every live tuple found in both
        /// directions, every removed one gone, each bucket holding exactly the entries
        /// whose tuples hash there, newest first, and the listing in bucket order.
        #[test]
        fn the_index_agrees_with_a_plain_list(
            buckets in 1u32..300,
            ops in prop::collection::vec((any::<bool>(), any::<u8>(), 0u16..8, any::<bool>()), 1..400),
        ) {
            let mut table = Table::new(buckets, 0, 7);
            // Each live entry: index, both tuples, birth order.
            let mut live: Vec<(u32, [Tuple; 2], u64)> = Vec::new();
            let mut gone: Vec<[Tuple; 2]> = Vec::new();
            let mut born = 0u64;
            for (insert, a, p, nat) in ops {
                if insert || live.is_empty() {
                    let (c, reply) = conn(a, p, a.wrapping_mul(3), 80, nat);
                    if table.find(&c.original, 0).is_some() || table.find(&reply, 0).is_some() {
                        continue;
                    }
                    born += 1;
                    let i = table.insert(c, reply);
                    prop_assert_eq!(table.tuples(i), [c.original, reply]);
                    live.push((i, [c.original, reply], born));
                } else {
                    let (i, tuples, _) = live.remove(usize::from(a) % live.len());
                    let (c, reply, _) = table.remove(i);
                    prop_assert_eq!([c.original, reply], tuples);
                    gone.push(tuples);
                }
            }
            prop_assert_eq!(table.len(), live.len());
            for (i, tuples, _) in &live {
                prop_assert_eq!(table.find(&tuples[0], 0), Some((*i, 0)));
                prop_assert_eq!(table.find(&tuples[1], 0), Some((*i, 1)));
                prop_assert!(table.find(&tuples[0], 1).is_none());
                // A translated entry is not found by its original's inverse.
                let mirror = tuples[0].invert().expect("UDP inverts");
                if mirror != tuples[1] && !live.iter().any(|(_, l, _)| l.contains(&mirror)) {
                    prop_assert!(table.find(&mirror, 0).is_none());
                }
            }
            for tuples in &gone {
                if !live.iter().any(|(_, l, _)| l.contains(&tuples[0])) {
                    prop_assert!(table.find(&tuples[0], 0).is_none());
                }
            }
            let mut newest_first = live.clone();
            newest_first.sort_by_key(|(_, _, b)| std::cmp::Reverse(*b));
            for b in 0..table.buckets() {
                let mut got = Vec::new();
                table.bucket_entries(b, &mut got);
                let mut want = Vec::new();
                for (i, tuples, _) in &newest_first {
                    // One slot an entry, and a second for a translated reply.
                    let mirrored = tuples[0].invert() == Some(tuples[1]);
                    let slots = if mirrored { &tuples[..1] } else { &tuples[..] };
                    for t in slots {
                        if table.bucket_of(t, 0) == b {
                            want.push(*i);
                        }
                    }
                }
                prop_assert_eq!(got, want, "bucket {}", b);
            }
            let listed: Vec<u32> = table.iter_listing().map(|(i, _)| i).collect();
            let mut want: Vec<(usize, std::cmp::Reverse<u64>, u32)> = live
                .iter()
                .map(|(i, tuples, b)| (table.bucket_of(&tuples[0], 0), std::cmp::Reverse(*b), *i))
                .collect();
            want.sort();
            prop_assert_eq!(listed, want.into_iter().map(|(_, _, i)| i).collect::<Vec<_>>());
        }
    }
}
