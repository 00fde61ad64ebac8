//! The hash table: entries in a slab, each linked into the buckets of both its tuples, as
//! the kernel hashes `tuplehash[ORIGINAL]` and `tuplehash[REPLY]`.
//!
//! Buckets are chains threaded through the entries themselves, so inserting and deleting
//! allocate nothing once the slab has grown; the bucket of a tuple is a keyed SipHash,
//! scaled like the kernel's `reciprocal_scale`. Early drop walks these same buckets.

use crate::conn::Conn;
use ctrack_packet::Tuple;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

const NIL: u32 = u32::MAX;

/// A node: entry index and direction, packed as `index << 1 | dir`.
type Node = u32;

struct Slot {
    conn: Conn,
    next: [Node; 2],
    used: bool,
}

/// The connection table.
pub struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heads: Vec<Node>,
    len: usize,
    key: (u64, u64),
}

impl Table {
    /// An empty table of `buckets` buckets, hashing with a key derived from `seed`.
    pub fn new(buckets: u32, seed: u64) -> Table {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            heads: vec![NIL; buckets.max(1) as usize],
            len: 0,
            key: (
                seed ^ 0x736f_6d65_7073_6575,
                seed.rotate_left(32) ^ 0x646f_7261_6e64_6f6d,
            ),
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

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.heads.len()
    }

    /// The bucket a tuple hashes to.
    pub fn bucket_of(&self, t: &Tuple, zone: u16) -> usize {
        // One write of the whole key: field-by-field hashing costs a partial-buffer step
        // per field on the hottest path. An IPv4 tuple hashes only its 4-byte addresses:
        // 16 bytes are two SipHash blocks where 40 are five.
        let mut key = [0u8; 40];
        let n = match t.family {
            ctrack_packet::Family::V4 => {
                key[..4].copy_from_slice(&t.src.0[..4]);
                key[4..8].copy_from_slice(&t.dst.0[..4]);
                8
            }
            ctrack_packet::Family::V6 => {
                key[..16].copy_from_slice(&t.src.0);
                key[16..32].copy_from_slice(&t.dst.0);
                32
            }
        };
        key[n..n + 2].copy_from_slice(&t.src_port.to_ne_bytes());
        key[n + 2..n + 4].copy_from_slice(&t.dst_port.to_ne_bytes());
        key[n + 4] = t.proto;
        key[n + 5] = t.family.number();
        key[n + 6..n + 8].copy_from_slice(&zone.to_ne_bytes());
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(&key[..n + 8]);
        let h32 = h.finish() as u32;
        ((u64::from(h32) * self.heads.len() as u64) >> 32) as usize
    }

    /// Asks for the head of bucket `b` to be brought toward the cache, ahead of a lookup:
    /// a hint that changes no result.
    pub fn prefetch_bucket(&self, b: usize) {
        if let Some(h) = self.heads.get(b) {
            prefetch(h);
        }
    }

    /// The same for the first entry of bucket `b` (its head must be cached by now).
    pub fn prefetch_first(&self, b: usize) {
        if let Some(&n) = self.heads.get(b) {
            if let Some(s) = self.slots.get((n >> 1) as usize) {
                prefetch(&s.conn);
            }
        }
    }

    /// Finds the entry with this tuple in either direction: `(index, direction)`.
    pub fn find(&self, t: &Tuple, zone: u16) -> Option<(u32, usize)> {
        let mut n = self.heads[self.bucket_of(t, zone)];
        while n != NIL {
            let (i, d) = ((n >> 1) as usize, (n & 1) as usize);
            let s = &self.slots[i];
            if s.conn.tuple[d] == *t && s.conn.zone == zone {
                return Some((i as u32, d));
            }
            n = s.next[d];
        }
        None
    }

    /// Inserts a connection, linking both tuples. Returns its index.
    pub fn insert(&mut self, conn: Conn) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Slot {
                    conn,
                    next: [NIL; 2],
                    used: true,
                };
                i
            }
            None => {
                self.slots.push(Slot {
                    conn,
                    next: [NIL; 2],
                    used: true,
                });
                (self.slots.len() - 1) as u32
            }
        };
        for d in 0..2 {
            let b = self.bucket_of(&conn.tuple[d], conn.zone);
            self.slots[idx as usize].next[d] = self.heads[b];
            self.heads[b] = idx << 1 | d as u32;
        }
        self.len += 1;
        idx
    }

    /// Removes an entry, returning it.
    pub fn remove(&mut self, idx: u32) -> Conn {
        let conn = self.slots[idx as usize].conn;
        for d in 0..2 {
            let b = self.bucket_of(&conn.tuple[d], conn.zone);
            let me = idx << 1 | d as u32;
            let after = self.slots[idx as usize].next[d];
            if self.heads[b] == me {
                self.heads[b] = after;
            } else {
                let mut n = self.heads[b];
                while n != NIL {
                    let (i, dd) = ((n >> 1) as usize, (n & 1) as usize);
                    if self.slots[i].next[dd] == me {
                        self.slots[i].next[dd] = after;
                        break;
                    }
                    n = self.slots[i].next[dd];
                }
            }
        }
        self.slots[idx as usize].used = false;
        self.free.push(idx);
        self.len -= 1;
        conn
    }

    /// The entry at an index.
    pub fn get(&self, idx: u32) -> &Conn {
        &self.slots[idx as usize].conn
    }

    /// The entry at an index, mutably.
    pub fn get_mut(&mut self, idx: u32) -> &mut Conn {
        &mut self.slots[idx as usize].conn
    }

    /// True when the index holds a live entry.
    pub fn is_live(&self, idx: u32) -> bool {
        self.slots.get(idx as usize).is_some_and(|s| s.used)
    }

    /// Entries whose nodes are in bucket `b`, in chain order (an entry may appear twice if
    /// both its tuples hash here).
    pub fn bucket_entries(&self, b: usize, out: &mut Vec<u32>) {
        let mut n = self.heads[b];
        while n != NIL {
            let (i, d) = (n >> 1, (n & 1) as usize);
            out.push(i);
            n = self.slots[i as usize].next[d];
        }
    }

    /// Every entry once, in the order `/proc/net/nf_conntrack` lists them: bucket by bucket,
    /// original-direction nodes only.
    pub fn iter_listing(&self) -> impl Iterator<Item = (u32, &Conn)> + '_ {
        self.heads.iter().flat_map(move |&head| {
            let mut n = head;
            std::iter::from_fn(move || {
                while n != NIL {
                    let (i, d) = (n >> 1, (n & 1) as usize);
                    n = self.slots[i as usize].next[d];
                    if d == 0 {
                        return Some((i, &self.slots[i as usize].conn));
                    }
                }
                None
            })
        })
    }

    /// Every live entry index.
    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.used)
            .map(|(i, _)| i as u32)
    }

    /// Bytes held by the table's own arrays (slab and bucket heads).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.heads.capacity() * std::mem::size_of::<Node>()
            + self.free.capacity() * 4
    }
}

/// A prefetch hint for the cache line holding `p`.
#[inline]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing the program sees; `p` is a valid
    // reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
