//! The commonest datagram read in place: IPv4 without options, not a fragment, carrying a
//! UDP header whose length fits, as a fast path sees it.
//!
//! [`Udp4::parse`] accepts a datagram only when [`Datagram::parse`](crate::Datagram::parse)
//! accepts it too and the UDP tracker's header checks pass, and then reads the same values:
//! whatever else a datagram is (options, a fragment, a bad length), it is `None` here and
//! takes the general path, which says what is wrong with it. A proptest holds the two to
//! each other.

use crate::{checksum, proto, Addr, Datagram, Family, Tuple};

/// An IPv4/UDP datagram checked as [`Datagram::parse`] and the UDP tracker check it, its
/// fields read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp4<'a> {
    /// The datagram, cut to the IPv4 total length.
    bytes: &'a [u8],
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
    checksum: u16,
}

/// The IPv4 header without options.
const HEADER: usize = 20;
/// And the UDP header.
const UDP_HEADER: usize = 8;

impl<'a> Udp4<'a> {
    /// The datagram if it is IPv4 without options, whole (not a fragment), its header
    /// checksum right, carrying UDP whose length field is at least 8 and within the
    /// datagram; `None` for every other datagram, good or bad.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Option<Udp4<'a>> {
        let h = bytes.first_chunk::<HEADER>()?;
        // Version 4, five words of header: no options.
        if h[0] != 0x45 || h[9] != proto::UDP {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        // A fragment (more to come, or an offset) is reassembled first.
        if total > bytes.len() || h[6] & 0x3f != 0 || h[7] != 0 {
            return None;
        }
        if !checksum::ipv4_header_verifies(h) {
            return None;
        }
        Self::with_udp(&bytes[..total])
    }

    /// The same of a datagram [`Datagram::parse`] made: `Some` for exactly those
    /// [`Udp4::parse`] takes.
    #[inline]
    pub fn of_datagram(d: &Datagram<'a>) -> Option<Udp4<'a>> {
        if d.family != Family::V4
            || d.proto != proto::UDP
            || d.l4_offset != HEADER
            || d.fragment.is_some()
        {
            return None;
        }
        Self::with_udp(d.bytes)
    }

    /// A datagram of this length whose IPv4 header was found right, if its UDP header is.
    #[inline(always)]
    fn with_udp(bytes: &'a [u8]) -> Option<Udp4<'a>> {
        let h = bytes.first_chunk::<{ HEADER + UDP_HEADER }>()?;
        let udp_len = usize::from(u16::from_be_bytes([h[24], h[25]]));
        if udp_len < UDP_HEADER || udp_len > bytes.len() - HEADER {
            return None;
        }
        Some(Udp4 {
            bytes,
            src: [h[12], h[13], h[14], h[15]],
            dst: [h[16], h[17], h[18], h[19]],
            src_port: u16::from_be_bytes([h[20], h[21]]),
            dst_port: u16::from_be_bytes([h[22], h[23]]),
            checksum: u16::from_be_bytes([h[26], h[27]]),
        })
    }

    /// The datagram's bytes, cut to its length.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The datagram's length, as [`crate::Datagram::len`].
    pub fn len(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// Never true: a datagram here has its headers.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The datagram's tuple, as [`Tuple::from_datagram`] makes it.
    #[inline]
    pub fn tuple(&self) -> Tuple {
        Tuple {
            src: Addr::v4(self.src),
            dst: Addr::v4(self.dst),
            src_port: self.src_port,
            dst_port: self.dst_port,
            proto: proto::UDP,
            family: Family::V4,
        }
    }

    /// Whether `t` is this datagram's tuple (0) or its inverse (1), as
    /// `t == self.tuple()` and `self.tuple().is_inverse_of(t)` tell, read without making
    /// the tuple.
    #[inline]
    pub fn direction_in(&self, t: &Tuple) -> Option<usize> {
        if t.family != Family::V4 || t.proto != proto::UDP {
            return None;
        }
        // Whole addresses compared as two words each, not byte by byte.
        let word = |a: &Addr| u128::from_ne_bytes(a.0);
        let (src, dst) = (word(&Addr::v4(self.src)), word(&Addr::v4(self.dst)));
        let (t_src, t_dst) = (word(&t.src), word(&t.dst));
        if (t_src, t_dst, t.src_port, t.dst_port) == (src, dst, self.src_port, self.dst_port) {
            Some(0)
        } else if (t_src, t_dst, t.src_port, t.dst_port) == (dst, src, self.dst_port, self.src_port)
        {
            Some(1)
        } else {
            None
        }
    }

    /// True when the source and destination addresses are the same.
    pub fn to_itself(&self) -> bool {
        self.src == self.dst
    }

    /// The two ends of the key the tracker hashes, each `address << 16 | port`, source
    /// first.
    #[inline]
    pub fn ends(&self) -> (u64, u64) {
        let end = |a: [u8; 4], port: u16| u64::from(u32::from_be_bytes(a)) << 16 | u64::from(port);
        (end(self.src, self.src_port), end(self.dst, self.dst_port))
    }

    /// True when the UDP checksum is right, or is 0 (none sent, which IPv4 allows): what
    /// the tracker checks at PREROUTING with `nf_conntrack_checksum` on.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        self.checksum == 0 || self.checksum_sums_to_zero()
    }

    fn checksum_sums_to_zero(&self) -> bool {
        let b = self.bytes;
        let udp_len = u16::from_be_bytes([b[24], b[25]]);
        let segment_end = HEADER + usize::from(udp_len);
        let Some((head, payload)) = b
            .get(..segment_end)
            .and_then(|d| d.split_first_chunk::<{ HEADER + UDP_HEADER }>())
        else {
            return false;
        };
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&head[at..at + 8]);
            w
        };
        // The pseudo-header's two addresses lie side by side in the IPv4 header, and the
        // UDP header is one word.
        checksum::NativeSum::default()
            .add_word(word(12))
            .add_be16(u16::from(proto::UDP))
            .add_be16(udp_len)
            .add_word(word(HEADER))
            .add_bytes(payload)
            .verifies()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A well-formed IPv4/UDP datagram with `payload` bytes of payload, both checksums
    /// filled in.
    fn datagram(payload: usize) -> Vec<u8> {
        let total = HEADER + UDP_HEADER + payload;
        let mut b = vec![0u8; total];
        b[0] = 0x45;
        b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        b[8] = 64;
        b[9] = proto::UDP;
        b[12..16].copy_from_slice(&[10, 1, 1, 1]);
        b[16..20].copy_from_slice(&[10, 1, 1, 2]);
        let c = checksum::finish(checksum::sum(&b[..HEADER], 0));
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b[20..22].copy_from_slice(&1234u16.to_be_bytes());
        b[22..24].copy_from_slice(&53u16.to_be_bytes());
        b[24..26].copy_from_slice(&((UDP_HEADER + payload) as u16).to_be_bytes());
        let src = Addr::v4([10, 1, 1, 1]);
        let dst = Addr::v4([10, 1, 1, 2]);
        let acc =
            checksum::pseudo_header(Family::V4, src, dst, proto::UDP, (total - HEADER) as u32);
        let c = checksum::finish(checksum::sum(&b[HEADER..], acc));
        b[26..28].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn reads_what_the_general_parse_reads() {
        let b = datagram(5);
        let u = Udp4::parse(&b).expect("a plain UDP datagram");
        let d = Datagram::parse(&b).expect("parses");
        assert_eq!(u.tuple(), Tuple::from_datagram(&d).expect("a tuple"));
        assert_eq!(u.len(), d.len());
        assert!(u.checksum_ok());
    }

    #[test]
    fn tells_a_tuple_and_its_inverse() {
        let b = datagram(0);
        let u = Udp4::parse(&b).expect("parses");
        let t = u.tuple();
        let r = t.invert().expect("UDP has an inverse");
        assert_eq!(u.direction_in(&t), Some(0));
        assert_eq!(u.direction_in(&r), Some(1));
        let mut other = t;
        other.src_port += 1;
        assert_eq!(u.direction_in(&other), None);
        let mut tcp = t;
        tcp.proto = proto::TCP;
        assert_eq!(u.direction_in(&tcp), None);
        let mut v6 = r;
        v6.family = Family::V6;
        assert_eq!(u.direction_in(&v6), None);
    }

    #[test]
    fn leaves_the_rest_to_the_general_path() {
        let plain = datagram(0);
        let with = |i: usize, v: u8| {
            let mut b = plain.clone();
            b[i] = v;
            b
        };
        // Options, another protocol, a fragment (more fragments, an offset), a bad header
        // checksum, a UDP length past the datagram, a UDP length under its header.
        for b in [
            with(0, 0x46),
            with(9, proto::TCP),
            with(6, 0x20),
            with(7, 1),
            with(10, plain[10] ^ 1),
            with(25, 9),
            with(25, 7),
        ] {
            assert_eq!(Udp4::parse(&b), None, "{b:02x?}");
        }
        // Don't Fragment is no fragment.
        let mut df = with(6, 0x40);
        let c = checksum::finish(checksum::sum(
            &{
                let mut h = df[..HEADER].to_vec();
                h[10] = 0;
                h[11] = 0;
                h
            },
            0,
        ));
        df[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(Udp4::parse(&df).is_some());
        let mut bad_sum = datagram(3);
        bad_sum[28] ^= 0xff;
        assert!(!Udp4::parse(&bad_sum).expect("parses").checksum_ok());
    }

    proptest! {
        /// Whatever the bytes, a datagram taken here is one the general parse takes, with
        /// the same tuple and length, whole, and a UDP header the tracker accepts; and its
        /// checksum is judged alike.
        #[test]
        fn a_datagram_taken_is_one_the_general_parse_takes(
            payload in 0usize..40,
            trailer in 0usize..4,
            edits in proptest::collection::vec((0usize..48, any::<u8>()), 0..4),
            fix_header_sum in any::<bool>(),
        ) {
            let mut b = datagram(payload);
            b.extend(std::iter::repeat_n(0xaa, trailer));
            for (i, v) in edits {
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
            }
            if fix_header_sum && b.len() >= HEADER {
                b[10] = 0;
                b[11] = 0;
                let c = checksum::finish(checksum::sum(&b[..HEADER], 0));
                b[10..12].copy_from_slice(&c.to_be_bytes());
            }
            if let Ok(d) = Datagram::parse(&b) {
                prop_assert_eq!(Udp4::of_datagram(&d), Udp4::parse(&b));
            }
            let Some(u) = Udp4::parse(&b) else { return Ok(()) };
            let d = Datagram::parse(&b).expect("the general parse takes it too");
            prop_assert_eq!(d.family, Family::V4);
            prop_assert!(d.fragment.is_none());
            prop_assert_eq!(d.l4_offset, HEADER);
            prop_assert_eq!(u.len(), d.len());
            prop_assert_eq!(u.tuple(), Tuple::from_datagram(&d).expect("a tuple"));
            let l4 = d.l4();
            let udp_len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            prop_assert!((UDP_HEADER..=l4.len()).contains(&udp_len));
            let general = u16::from_be_bytes([l4[6], l4[7]]) == 0
                || checksum::verify(d.family, d.src, d.dst, d.proto, &l4[..udp_len], true);
            prop_assert_eq!(u.checksum_ok(), general);
        }
    }
}
