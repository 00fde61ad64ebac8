//! A zero-copy view of a TCP header, and the option parsing conntrack does on it.

/// TCP flag bits, as in the header's 13th byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    /// FIN set.
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
}

/// A TCP segment. Construct with [`TcpView::new`], which checks that the fixed header and
/// the options it announces are present; after that no accessor panics.
#[derive(Clone, Copy, Debug)]
pub struct TcpView<'a> {
    bytes: &'a [u8],
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
}

/// TCP option kinds conntrack reads.
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WINDOW: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;

/// Window scale and SACK-permitted, as `tcp_options()` in the kernel reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// The window scale option was present.
    pub window_scale: bool,
    /// Its shift, capped at 14 as RFC 7323 (and the kernel) require.
    pub scale: u8,
    /// SACK permitted was present.
    pub sack_perm: bool,
}

impl<'a> TcpView<'a> {
    /// Checks the length: at least 20 bytes, and the data offset within the segment.
    /// Returns `None` for what the kernel logs as "truncated packet".
    pub fn new(bytes: &'a [u8]) -> Option<TcpView<'a>> {
        if bytes.len() < 20 {
            return None;
        }
        let doff = usize::from(bytes[field::DATA_OFF] >> 4) * 4;
        if doff < 20 || doff > bytes.len() {
            return None;
        }
        Some(TcpView { bytes })
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        self.u32_at(field::SEQ)
    }
    /// Acknowledgement number.
    pub fn ack(&self) -> u32 {
        self.u32_at(field::ACK)
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes[field::DATA_OFF] >> 4) * 4
    }
    /// The flag byte.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.bytes[field::FLAGS])
    }
    /// The raw (unscaled) window.
    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }
    /// Payload length in bytes.
    pub fn payload_len(&self) -> u32 {
        (self.bytes.len() - self.header_len()) as u32
    }
    /// The whole segment.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The option bytes.
    pub fn options(&self) -> &'a [u8] {
        &self.bytes[20..self.header_len()]
    }

    /// `seq + payload + SYN + FIN`: the kernel's `segment_seq_plus_len`.
    pub fn end(&self) -> u32 {
        let f = self.flags();
        self.seq()
            .wrapping_add(self.payload_len())
            .wrapping_add(u32::from(f.syn()))
            .wrapping_add(u32::from(f.fin()))
    }

    /// Reads window scale and SACK-permitted. `None` when the segment has no options at all,
    /// in which case the kernel leaves the previous values alone.
    pub fn parse_options(&self) -> Option<TcpOptions> {
        let mut opts = self.options();
        if opts.is_empty() {
            return None;
        }
        let mut out = TcpOptions::default();
        while let Some(&kind) = opts.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => opts = &opts[1..],
                _ => {
                    let Some(&size) = opts.get(1) else { break };
                    let size = usize::from(size);
                    if size < 2 || size > opts.len() {
                        break;
                    }
                    if kind == OPT_SACK_PERM && size == 2 {
                        out.sack_perm = true;
                    } else if kind == OPT_WINDOW && size == 3 {
                        out.window_scale = true;
                        out.scale = opts[2].min(14);
                    }
                    opts = &opts[size..];
                }
            }
        }
        Some(out)
    }

    /// The highest right edge among the SACK blocks, if above `ack` (the kernel's
    /// `tcp_sack`); `ack` otherwise.
    pub fn highest_sack(&self, ack: u32) -> u32 {
        let mut opts = self.options();
        let mut sack = ack;
        // The kernel's fast path: a lone aligned timestamp option carries no SACK.
        if opts.len() == 12 && opts[..4] == [OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10] {
            return sack;
        }
        while let Some(&kind) = opts.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => opts = &opts[1..],
                _ => {
                    let Some(&size) = opts.get(1) else { break };
                    let size = usize::from(size);
                    if size < 2 || size > opts.len() {
                        break;
                    }
                    if kind == OPT_SACK && size >= 10 && (size - 2) % 8 == 0 {
                        for block in opts[2..size].chunks_exact(8) {
                            let right =
                                u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                            if seq_after(right, sack) {
                                sack = right;
                            }
                        }
                        break;
                    }
                    opts = &opts[size..];
                }
            }
        }
        sack
    }
}

/// `before(a, b)` of the kernel: `a` precedes `b` in sequence space.
pub fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `after(a, b)` of the kernel.
pub fn seq_after(a: u32, b: u32) -> bool {
    seq_before(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_with(opts: &[u8]) -> Vec<u8> {
        let doff = (20 + opts.len()) / 4;
        let mut s = vec![
            0x30,
            0x39,
            0,
            80,
            0,
            0,
            0,
            100,
            0,
            0,
            0,
            0,
            (doff as u8) << 4,
            0x02,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ];
        s.extend_from_slice(opts);
        s
    }

    #[test]
    fn reads_window_scale_and_sack_perm() {
        let s = syn_with(&[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 20, 0, 0]);
        let v = TcpView::new(&s).unwrap();
        let o = v.parse_options().unwrap();
        assert!(o.sack_perm && o.window_scale);
        assert_eq!(o.scale, 14, "scale is capped at 14");
        assert_eq!(v.end(), 101, "SYN counts one");
    }

    #[test]
    fn stops_at_silly_option_lengths() {
        let s = syn_with(&[3, 1, 9, 0]);
        let o = TcpView::new(&s).unwrap().parse_options().unwrap();
        assert!(!o.window_scale);
    }

    #[test]
    fn finds_highest_sack_edge() {
        let s = syn_with(&[
            1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 50, 0, 0, 0, 60, 0, 0, 0, 90,
        ]);
        let v = TcpView::new(&s).unwrap();
        assert_eq!(v.highest_sack(40), 90);
        assert_eq!(v.highest_sack(100), 100);
    }

    #[test]
    fn rejects_truncated_header() {
        assert!(TcpView::new(&[0; 19]).is_none());
        let mut s = syn_with(&[]);
        s[12] = 0xf0; // 60-byte header in a 20-byte segment
        assert!(TcpView::new(&s).is_none());
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_before(0xffff_fff0, 5));
        assert!(seq_after(5, 0xffff_fff0));
        assert!(!seq_before(5, 5));
    }
}
