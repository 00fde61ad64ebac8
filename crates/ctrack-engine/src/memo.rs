//! Chain walks remembered per connection and direction, so that the packets after a
//! connection's first are not walked through rules that can only decide as they did.
//!
//! A walk whose rules read only what the packets of a connection share in one direction
//! and state (see `ctrack_rules::Ruleset::replayable`: addresses, protocol, ports, ICMP
//! type, interfaces, state bits, the connection's tuples) and ran no target but a verdict
//! or a jump decides alike for all of them. Every packet of a confirmed connection in one
//! direction and state (NEW before a reply, ESTABLISHED after, ESTABLISHED in reply),
//! entering the same way (from the wire or from the host), has the same ones at each
//! chain: conntrack found the connection by that very tuple; its NAT binding, which changes
//! the addresses the later hooks see, is fixed once the connection is confirmed; and the
//! host model routes by address, so the interfaces follow. So such a walk is kept for its
//! connection and direction, and the next packet that reaches the same chain as the same
//! walk of its packet takes it again: the same counters bumped, the same decision, without
//! the walk. ICMP errors (RELATED), whose addresses are the router's, are walked every
//! time, as are packets without a confirmed connection.
//!
//! Nothing here changes what a packet is decided, or a counter: it only spares the walk.
//! A connection gone and its entry reused by another is told by the entry's id, and a walk
//! met at another chain than the one kept (another path through the hooks) is walked and
//! kept in its place.
//!
//! A packet's whole way through the hooks is kept too, as a [`Path`], where every chain it
//! met was empty (its policy counted) or had a walk kept, and its connection has no NAT
//! binding and no helper: the chains in order and how it ended. Such a path is the same for
//! the connection's next packets in that direction and state, but for the TTL a forwarded
//! packet must have left: the pipeline takes it again without the hooks (`Engine::take_path`),
//! after conntrack's fast path for an IPv4/UDP datagram or its general one for the rest.

use crate::Table;
use ctrack_conntrack::status::ips;
use ctrack_conntrack::{Conn, CtInfo, Hook, PacketState};
use ctrack_rules::Replay;
use std::collections::HashMap;

/// Walks with rules kept a connection and direction: the first so many of its packet's.
const WALKS: usize = 3;

/// The most chains a kept [`Path`] meets: a packet sent by the host to itself meets ten
/// tables' chains (OUTPUT's mangle, filter and security, POSTROUTING's mangle, then raw and
/// mangle of PREROUTING and mangle, filter and security of INPUT), with room for raw at
/// OUTPUT.
const STEPS: usize = 12;

/// What makes a packet's walks those of its connection's other packets: its connection's
/// entry, that entry's id, its direction and a tag of its state, its way in and its
/// connection's NAT bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    entry: u32,
    id: u32,
    reply: bool,
    tag: u16,
}

impl Key {
    /// The key of a packet of state `state` whose connection is the confirmed `conn` at
    /// `entry`, from the wire or from the host; `None` for a state whose packets may
    /// differ in their addresses (RELATED).
    pub(crate) fn of(entry: u32, conn: &Conn, state: PacketState, wire: bool) -> Option<Key> {
        let (ci, reply) = match state {
            PacketState::Tracked(ci @ CtInfo::New)
            | PacketState::Tracked(ci @ CtInfo::Established) => (ci, false),
            PacketState::Tracked(ci @ CtInfo::EstablishedReply) => (ci, true),
            _ => return None,
        };
        let nat = conn.status & (ips::SRC_NAT | ips::DST_NAT);
        Some(Key {
            entry,
            id: conn.id,
            reply,
            // Never 0, so that a slot never kept matches no key. Where the packet came in
            // decides its input interface and the hooks it takes.
            tag: (1 + ci as u16) | (u16::from(wire) << 3) | ((nat as u16) << 4),
        })
    }
}

/// One connection's walks in one direction.
#[derive(Clone, Copy, Default)]
struct Slot {
    id: u32,
    tag: u16,
    /// Each walk's place in [`Memo::kept`], plus one; 0 for none.
    walks: [u16; WALKS],
    /// The packet's path's place in [`Memo::paths`], plus one; 0 for none.
    path: u16,
}

/// The last rule that matched a packet (hook, table, chain, rule), as [`crate::Outcome`]
/// gives it.
pub(crate) type LastRule = Option<(Hook, Table, usize, usize)>;

/// One chain of a kept [`Path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// A chain with rules, whose walk is the one kept at this place in [`Memo::kept`].
    Walk(u16),
    /// An empty chain (table and chain indexes), its policy ACCEPT.
    Policy(u16, u16),
}

/// How a kept [`Path`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum End {
    /// Delivered to the host.
    Delivered,
    /// Forwarded: only while the packet's TTL is above 1.
    Forwarded,
    /// Sent out by the host.
    Sent,
}

/// A packet's whole way through the hooks after conntrack: the chains it met in order, the
/// last rule that matched, how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Path {
    steps: [Step; STEPS],
    len: u8,
    pub(crate) rule: LastRule,
    pub(crate) end: End,
}

impl Path {
    /// The chains met, in order.
    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps[..usize::from(self.len)]
    }
}

/// A kept walk: where it was, what it did, and what the pipeline makes of that (which
/// follows from the rest).
#[derive(Clone, Copy)]
pub(crate) struct Kept {
    pub(crate) hook: Hook,
    pub(crate) table: Table,
    pub(crate) replay: Replay,
    /// The packet's last rule after the walk, if the walk matched one.
    pub(crate) rule: LastRule,
    /// The table's decision as the pipeline takes it.
    pub(crate) passed: Result<(), crate::DropReason>,
}

/// The walks kept: per direction, a slot per connection entry, each naming walks in a
/// list of the distinct ones (a ruleset has few ways through it, and most connections take
/// the same).
#[derive(Default)]
pub(crate) struct Memo {
    slots: [Vec<Slot>; 2],
    kept: Vec<Kept>,
    /// Where each kept walk is in `kept`, by where it was and what it did.
    places: HashMap<(Hook, Table, Replay), u16>,
    /// The distinct paths kept, and where each is.
    paths: Vec<Path>,
    path_places: HashMap<Path, u16>,
    /// The chains met so far by the packet whose path is being recorded; `None` once it
    /// met one that cannot be kept.
    recording: Option<(u8, [Step; STEPS])>,
}

impl Memo {
    /// `key`'s slot, if it holds what was kept for that key.
    #[inline(always)]
    fn slot(&self, key: Key) -> Option<&Slot> {
        let slot = self.slots[usize::from(key.reply)].get(key.entry as usize)?;
        (slot.id == key.id && slot.tag == key.tag).then_some(slot)
    }

    /// `key`'s slot, emptied of what another key kept there.
    fn slot_mut(&mut self, key: Key) -> &mut Slot {
        let slots = &mut self.slots[usize::from(key.reply)];
        let at = key.entry as usize;
        if at >= slots.len() {
            slots.resize((at + 1).max(slots.len() * 2), Slot::default());
        }
        let slot = &mut slots[at];
        if slot.id != key.id || slot.tag != key.tag {
            *slot = Slot {
                id: key.id,
                tag: key.tag,
                ..Slot::default()
            };
        }
        slot
    }

    /// The walk kept as the `nth` of `key`'s packets, if it was at `hook` and `table`, and
    /// its place.
    #[inline]
    pub(crate) fn get(
        &self,
        key: Key,
        nth: usize,
        hook: Hook,
        table: Table,
    ) -> Option<(u16, &Kept)> {
        let place = *self.slot(key)?.walks.get(nth)?;
        let kept = self.kept.get(usize::from(place).checked_sub(1)?)?;
        (kept.hook == hook && kept.table == table).then_some((place, kept))
    }

    /// The walk kept at `place`.
    #[inline(always)]
    pub(crate) fn kept(&self, place: u16) -> Option<&Kept> {
        self.kept.get(usize::from(place).checked_sub(1)?)
    }

    /// Keeps a walk as the `nth` of `key`'s packets, in place of what was kept there, and
    /// gives its place; `None` when it is not kept.
    pub(crate) fn put(&mut self, key: Key, nth: usize, kept: Kept) -> Option<u16> {
        if nth >= WALKS {
            return None;
        }
        let id = (kept.hook, kept.table, kept.replay);
        let place = match self.places.get(&id) {
            Some(&p) => p,
            None => {
                // Past this many distinct walks, the rest are walked every time.
                let p = u16::try_from(self.kept.len() + 1).ok()?;
                self.places.insert(id, p);
                self.kept.push(kept);
                p
            }
        };
        self.slot_mut(key).walks[nth] = place;
        Some(place)
    }

    /// The path kept for `key`'s packets.
    #[inline]
    pub(crate) fn path(&self, key: Key) -> Option<&Path> {
        let place = self.slot(key)?.path;
        self.paths.get(usize::from(place).checked_sub(1)?)
    }

    /// Starts recording a packet's path.
    pub(crate) fn record(&mut self) {
        self.recording = Some((0, [Step::Policy(0, 0); STEPS]));
    }

    /// Notes the next chain of the packet being recorded, if one is.
    #[inline]
    pub(crate) fn step(&mut self, step: Step) {
        if let Some((len, steps)) = &mut self.recording {
            match steps.get_mut(usize::from(*len)) {
                Some(s) => {
                    *s = step;
                    *len += 1;
                }
                None => self.recording = None,
            }
        }
    }

    /// The packet being recorded met a chain that cannot be kept.
    #[inline]
    pub(crate) fn spoil(&mut self) {
        self.recording = None;
    }

    /// Ends a recording: the packet's path, if it may be kept, is kept for `key`.
    pub(crate) fn end_recording(&mut self, key: Key, kept: Option<(LastRule, End)>) {
        let (Some((len, steps)), Some((rule, end))) = (self.recording.take(), kept) else {
            return;
        };
        let path = Path {
            steps,
            len,
            rule,
            end,
        };
        let place = match self.path_places.get(&path) {
            Some(&p) => p,
            None => {
                // Past this many distinct paths, the rest take the hooks every time.
                let Ok(p) = u16::try_from(self.paths.len() + 1) else {
                    return;
                };
                self.path_places.insert(path, p);
                self.paths.push(path);
                p
            }
        };
        self.slot_mut(key).path = place;
    }
}

#[cfg(test)]
impl Memo {
    /// Distinct walks kept.
    pub(crate) fn distinct(&self) -> usize {
        self.kept.len()
    }

    /// Distinct paths kept.
    pub(crate) fn distinct_paths(&self) -> usize {
        self.paths.len()
    }

    /// Connections with a walk kept, by direction (original, reply).
    pub(crate) fn connections(&self) -> [usize; 2] {
        self.slots
            .each_ref()
            .map(|s| s.iter().filter(|s| s.walks.iter().any(|&w| w != 0)).count())
    }
}
