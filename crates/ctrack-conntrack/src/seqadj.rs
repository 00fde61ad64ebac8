//! TCP sequence adjustment after a helper changed a payload's length (`nf_conntrack_seqadj.c`).
//!
//! When NAT rewrites an FTP command to a longer or shorter text, every later sequence number
//! of that direction is off by the difference, and so is every acknowledgement of the other
//! direction. Each direction keeps where the last change happened and the offsets before and
//! after it; [`SeqAdj::adjust`] rewrites a leaving segment's SEQ, ACK and SACK blocks, and the
//! TCP tracker subtracts the offset from the acknowledgements it checks.

use ctrack_packet::checksum;
use ctrack_packet::tcp::{seq_after, seq_before};

/// One direction's correction (`struct nf_ct_seqadj`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqAdj {
    /// Sequence number of the segment whose length changed.
    pub correction_pos: u32,
    /// Offset of sequence numbers up to and including that segment.
    pub offset_before: i32,
    /// Offset of sequence numbers after it.
    pub offset_after: i32,
}

impl SeqAdj {
    /// `nf_ct_seqadj_set`: the segment starting at `seq` grew by `off` bytes. A second change
    /// before the first was passed (a retransmission of the changed segment) is not counted
    /// twice.
    pub fn record(&mut self, seq: u32, off: i32) {
        if off == 0 {
            return;
        }
        if self.offset_before == self.offset_after || seq_before(self.correction_pos, seq) {
            self.correction_pos = seq;
            self.offset_before = self.offset_after;
            self.offset_after = self.offset_after.wrapping_add(off);
        }
    }

    /// `nf_ct_seq_offset`: the offset of sequence number `seq` of this direction.
    pub fn offset(&self, seq: u32) -> i32 {
        if seq_after(seq, self.correction_pos) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// The offset an acknowledgement (or SACK edge) of this direction's data, as the peer
    /// sent it in adjusted numbers, takes off.
    fn ack_offset(&self, ack: u32) -> i32 {
        if seq_after(
            ack.wrapping_sub(self.offset_before as u32),
            self.correction_pos,
        ) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// `nf_ct_seq_adjust`: rewrites the TCP header `tcp` of a leaving segment sent in the
    /// direction `this` describes (`other` is the opposite direction): SEQ moves by this
    /// direction's offset, ACK and SACK edges back by the other's. The checksum is updated
    /// incrementally. A header shorter than 20 bytes is left alone. True when a number
    /// changed.
    pub fn adjust(tcp: &mut [u8], this: &SeqAdj, other: &SeqAdj) -> bool {
        if tcp.len() < 20 {
            return false;
        }
        let word =
            |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut csum = u16::from_be_bytes([tcp[16], tcp[17]]);
        let seq = word(tcp, 4);
        let new_seq = seq.wrapping_add(this.offset(seq) as u32);
        let ack = word(tcp, 8);
        let new_ack = ack.wrapping_sub(other.ack_offset(ack) as u32);
        csum = checksum::replace(csum, &seq.to_be_bytes(), &new_seq.to_be_bytes());
        csum = checksum::replace(csum, &ack.to_be_bytes(), &new_ack.to_be_bytes());
        tcp[4..8].copy_from_slice(&new_seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&new_ack.to_be_bytes());
        let mut changed = new_seq != seq || new_ack != ack;
        // SACK blocks acknowledge the other direction's data, as ACK does.
        let hlen = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
        let mut at = 20;
        while at < hlen {
            match tcp[at] {
                0 => break,
                1 => at += 1,
                kind => {
                    let Some(&len) = tcp.get(at + 1) else { break };
                    let len = usize::from(len);
                    if len < 2 || at + len > hlen {
                        break;
                    }
                    if kind == 5 && len >= 10 && (len - 2) % 8 == 0 {
                        let mut b = at + 2;
                        while b < at + len {
                            for edge in [b, b + 4] {
                                let old = word(tcp, edge);
                                let new = old.wrapping_sub(other.ack_offset(old) as u32);
                                changed |= new != old;
                                csum =
                                    checksum::replace(csum, &old.to_be_bytes(), &new.to_be_bytes());
                                tcp[edge..edge + 4].copy_from_slice(&new.to_be_bytes());
                            }
                            b += 8;
                        }
                    }
                    at += len;
                }
            }
        }
        tcp[16..18].copy_from_slice(&csum.to_be_bytes());
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctrack_packet::{Addr, Family};

    fn segment(seq: u32, ack: u32, sack: Option<(u32, u32)>) -> Vec<u8> {
        let opts: Vec<u8> = match sack {
            Some((l, r)) => {
                let mut o = vec![1, 1, 5, 10];
                o.extend(l.to_be_bytes());
                o.extend(r.to_be_bytes());
                o
            }
            None => Vec::new(),
        };
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&21u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) as u8) << 4;
        t[13] = 0x18;
        t.extend(opts);
        t.extend(b"payload");
        let (s, d) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        let acc = checksum::pseudo_header(Family::V4, s, d, 6, t.len() as u32);
        let c = checksum::finish(checksum::sum(&t, acc));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    fn checksum_ok(t: &[u8]) -> bool {
        let (s, d) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        checksum::verify(Family::V4, s, d, 6, t, true)
    }

    #[test]
    fn the_changed_segment_keeps_its_sequence_number_and_later_ones_move() {
        let mut a = SeqAdj::default();
        a.record(1000, 12);
        assert_eq!(a.offset(1000), 0);
        assert_eq!(a.offset(1001), 12);
        // A retransmission of the changed segment does not add the offset again.
        a.record(1000, 12);
        assert_eq!(a.offset_after, 12);
        // A later change adds to it.
        a.record(2000, -3);
        assert_eq!((a.offset(1500), a.offset(2001)), (12, 9));
    }

    #[test]
    fn adjust_moves_seq_ack_and_sack_and_keeps_the_checksum_right() {
        let mut this = SeqAdj::default();
        this.record(1000, 5);
        let mut other = SeqAdj::default();
        other.record(7000, 20);
        let mut t = segment(1100, 7200, Some((7300, 7400)));
        SeqAdj::adjust(&mut t, &this, &other);
        let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        assert_eq!(word(4), 1105);
        assert_eq!(word(8), 7180);
        assert_eq!((word(24), word(28)), (7280, 7380));
        assert!(checksum_ok(&t));
    }

    #[test]
    fn an_ack_of_data_before_the_change_takes_the_earlier_offset() {
        let this = SeqAdj::default();
        let mut other = SeqAdj::default();
        other.record(7000, 20);
        // 7000 itself, as acknowledged, was not moved.
        let mut t = segment(1, 7000, None);
        SeqAdj::adjust(&mut t, &this, &other);
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 7000);
        assert!(checksum_ok(&t));
    }
}
