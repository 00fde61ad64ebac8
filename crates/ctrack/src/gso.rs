//! Putting the host's own TCP segments back together.
//!
//! Linux's TCP always builds GSO packets: a socket hands one large packet to the IP layer,
//! it passes the OUTPUT and POSTROUTING hooks whole, and is cut into MTU-sized segments only
//! afterwards, by the device or by software GSO. A capture shows the segments; conntrack saw
//! (and counted) the whole. [`Coalescer`] rebuilds the whole from a run of segments sent by
//! the host: same connection, contiguous sequence numbers, same ACK, window and options,
//! captured back to back.

use ctrack_packet::{proto, Datagram, Family, TcpView};

/// Segments of one GSO packet leave within this many nanoseconds of each other.
const MAX_GAP_NS: u64 = 500_000;

/// A run of segments being collected.
struct Run {
    time: u64,
    index: usize,
    last_time: u64,
    bytes: Vec<u8>,
    /// Offset of the TCP header in `bytes`.
    l4: usize,
    key: ([u8; 16], [u8; 16], u16, u16, Family),
    next_seq: u32,
    ack: u32,
    window: u16,
    options: Vec<u8>,
    ip_id: Option<u16>,
    segments: usize,
}

/// Collects the host's outgoing TCP segments into the packets conntrack saw.
#[derive(Default)]
pub struct Coalescer {
    run: Option<Run>,
    /// Segments folded into an earlier one.
    pub merged: u64,
}

/// A packet ready for the pipeline: when, its position in the capture, and its bytes.
pub type Ready = (u64, usize, Vec<u8>);

impl Coalescer {
    /// Offers one outgoing packet sent by the host. Returns what is ready for the pipeline
    /// (the finished run, if this packet does not continue it), and keeps this packet if it
    /// may start or continue a run; otherwise returns it too.
    pub fn offer(&mut self, time: u64, index: usize, ip: &[u8], out: &mut Vec<Ready>) {
        let Some((d, seg)) = parse(ip) else {
            self.flush(out);
            out.push((time, index, ip.to_vec()));
            return;
        };
        let key = (d.src.0, d.dst.0, seg.src_port(), seg.dst_port(), d.family);
        let ip_id = (d.family == Family::V4).then(|| u16::from_be_bytes([ip[4], ip[5]]));
        let f = seg.flags();
        if let Some(run) = &mut self.run {
            let continues = run.key == key
                && seg.seq() == run.next_seq
                && seg.ack() == run.ack
                && seg.window() == run.window
                && seg.options() == run.options.as_slice()
                && seg.payload_len() > 0
                && !f.syn()
                && !f.rst()
                && time.saturating_sub(run.last_time) <= MAX_GAP_NS
                && match (run.ip_id, ip_id) {
                    (Some(a), Some(b)) => b == a.wrapping_add(1),
                    (None, None) => true,
                    _ => false,
                };
            if continues {
                let payload = &seg.bytes()[seg.header_len()..];
                run.bytes.extend_from_slice(payload);
                // PSH and FIN belong to the last segment; the whole carries them.
                run.bytes[run.l4 + 13] |= f.0 & 0x09;
                run.next_seq = run.next_seq.wrapping_add(seg.payload_len());
                run.last_time = time;
                run.ip_id = ip_id;
                run.segments += 1;
                self.merged += 1;
                if f.fin() {
                    self.flush(out);
                }
                return;
            }
        }
        self.flush(out);
        if f.syn() || f.rst() || f.fin() || seg.payload_len() == 0 {
            out.push((time, index, ip.to_vec()));
            return;
        }
        let l4 = d.l4_offset;
        let bytes = ip.to_vec();
        self.run = Some(Run {
            time,
            index,
            last_time: time,
            l4,
            key,
            next_seq: seg.seq().wrapping_add(seg.payload_len()),
            ack: seg.ack(),
            window: seg.window(),
            options: seg.options().to_vec(),
            ip_id,
            segments: 1,
            bytes,
        });
    }

    /// Anything not sent by the host passes here, so that a run ends before it.
    pub fn flush(&mut self, out: &mut Vec<Ready>) {
        if let Some(mut run) = self.run.take() {
            if run.segments > 1 {
                fix_lengths(&mut run.bytes, run.l4);
            }
            out.push((run.time, run.index, run.bytes));
        }
    }
}

fn parse(ip: &[u8]) -> Option<(Datagram<'_>, TcpView<'_>)> {
    let d = Datagram::parse(ip).ok()?;
    if d.proto != proto::TCP || d.fragment.is_some() {
        return None;
    }
    let seg = TcpView::new(d.l4())?;
    Some((d, seg))
}

/// Sets the IP length fields (and the IPv4 header checksum) of a rebuilt packet.
fn fix_lengths(b: &mut [u8], _l4: usize) {
    let len = b.len();
    if b[0] >> 4 == 4 {
        b[2..4].copy_from_slice(&(len.min(65535) as u16).to_be_bytes());
        let ihl = usize::from(b[0] & 0x0f) * 4;
        b[10] = 0;
        b[11] = 0;
        let c = ctrack_packet::checksum::finish(ctrack_packet::checksum::sum(&b[..ihl], 0));
        b[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        b[4..6].copy_from_slice(&((len - 40).min(65535) as u16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u16, seq: u32, flags: u8, payload: usize) -> Vec<u8> {
        let total = 40 + payload;
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        let c = ctrack_packet::checksum::finish(ctrack_packet::checksum::sum(&p, 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&80u16.to_be_bytes());
        t[2..4].copy_from_slice(&4000u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 0x50;
        t[13] = flags;
        t[14] = 1;
        p.extend_from_slice(&t);
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    #[test]
    fn joins_back_to_back_segments_into_one_packet() {
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        c.offer(1000, 0, &seg(1, 100, 0x10, 1448), &mut out);
        c.offer(1100, 1, &seg(2, 1548, 0x10, 1448), &mut out);
        c.offer(1200, 2, &seg(3, 2996, 0x18, 104), &mut out);
        assert!(out.is_empty());
        c.flush(&mut out);
        assert_eq!(out.len(), 1);
        let (t, _, whole) = &out[0];
        assert_eq!(*t, 1000);
        let d = Datagram::parse(whole).unwrap();
        assert_eq!(d.len(), 40 + 3000);
        assert_eq!(TcpView::new(d.l4()).unwrap().flags().0, 0x18);
        assert_eq!(c.merged, 2);
    }

    #[test]
    fn a_gap_in_sequence_or_time_ends_the_run() {
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        c.offer(0, 0, &seg(1, 100, 0x10, 100), &mut out);
        c.offer(10, 1, &seg(2, 999, 0x10, 100), &mut out);
        assert_eq!(out.len(), 1);
        c.offer(10_000_000, 2, &seg(3, 1099, 0x10, 100), &mut out);
        c.flush(&mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn pure_acks_and_handshake_pass_straight_through() {
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        c.offer(0, 0, &seg(1, 100, 0x12, 0), &mut out);
        c.offer(0, 1, &seg(2, 101, 0x10, 0), &mut out);
        assert_eq!(out.len(), 2);
        assert!(c.run.is_none());
    }
}
