//! The Internet checksum (RFC 1071) over transport segments and their pseudo-headers.
//!
//! Conntrack verifies TCP, UDP and ICMP checksums of packets arriving at PREROUTING when
//! `nf_conntrack_checksum=1`; this is the one place that computes them.

use crate::{Addr, Family};

/// Adds `data` to a running one's-complement sum (not yet folded: [`finish`] folds it).
///
/// Summed as a [`NativeSum`], folded and put in network order once at the end, so that
/// the result is the same as word by word (RFC 1071 section 2).
#[inline]
pub fn sum(data: &[u8], acc: u64) -> u64 {
    acc + NativeSum::default().add_bytes(data).network_order()
}

/// A one's-complement sum of bytes read as they lie in memory, eight at a time in the
/// machine's byte order, with end-around carry; folded once at the end.
///
/// The one's-complement sum of byte-swapped words is the byte-swapped sum, and 2^16 is 1
/// modulo 0xffff, so where a 16-bit word sits in the 64-bit sum does not change the fold:
/// an IPv4 header is three additions, not ten, and no byte is swapped on the way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NativeSum(u64);

impl NativeSum {
    /// Adds eight bytes read in the machine's order.
    #[inline(always)]
    pub fn add_word(self, w: [u8; 8]) -> NativeSum {
        self.add(u64::from_ne_bytes(w))
    }

    /// Adds a 16-bit field given in host order, as the network-order bytes of a header
    /// or pseudo-header hold it.
    #[inline(always)]
    pub fn add_be16(self, v: u16) -> NativeSum {
        self.add(u64::from(u16::from_ne_bytes(v.to_be_bytes())))
    }

    #[inline(always)]
    fn add(self, w: u64) -> NativeSum {
        let (s, carry) = self.0.overflowing_add(w);
        // Cannot overflow: a sum that carried is at most 2^64 - 2.
        NativeSum(s + u64::from(carry))
    }

    /// Adds bytes starting at an even offset of the checksummed data; an odd last byte is
    /// the first of a word padded with zero.
    #[inline]
    pub fn add_bytes(mut self, data: &[u8]) -> NativeSum {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self = self.add_word([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        let mut rest = words.remainder();
        if let [a, b, c, d, tail @ ..] = rest {
            self = self.add(u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
            rest = tail;
        }
        if let [a, b, tail @ ..] = rest {
            self = self.add(u64::from(u16::from_ne_bytes([*a, *b])));
            rest = tail;
        }
        if let [last] = rest {
            self = self.add(u64::from(u16::from_ne_bytes([*last, 0])));
        }
        self
    }

    /// True when the data summed, checksum field included, sums to zero: a checksum that
    /// verifies.
    #[inline(always)]
    pub fn verifies(self) -> bool {
        fold(self.0) == 0xffff
    }

    /// The sum folded to 16 bits in network order, for [`finish`].
    #[inline(always)]
    fn network_order(self) -> u64 {
        u64::from(u16::from_be(fold(self.0)))
    }
}

/// A one's-complement sum folded to 16 bits with end-around carry: 0 only for 0.
#[inline(always)]
fn fold(acc: u64) -> u16 {
    let (s, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s + u32::from(carry);
    let (s, carry) = (s as u16).overflowing_add((s >> 16) as u16);
    s + u16::from(carry)
}

/// True when an IPv4 header without options sums to zero, checksum field included.
#[inline(always)]
pub fn ipv4_header_verifies(h: &[u8; 20]) -> bool {
    let (words, tail) = h.split_at(16);
    NativeSum::default()
        .add_bytes(words)
        .add(u64::from(u32::from_ne_bytes([
            tail[0], tail[1], tail[2], tail[3],
        ])))
        .verifies()
}

/// Folds a running sum to 16 bits and complements it.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The pseudo-header sum for a transport segment of `len` bytes.
pub fn pseudo_header(family: Family, src: Addr, dst: Addr, proto: u8, len: u32) -> u64 {
    let acc = match family {
        // The two IPv4 addresses are one eight-byte pair; IPv6's go through `sum`.
        Family::V4 => {
            let word = |a: Addr| u64::from(u32::from_be_bytes([a.0[0], a.0[1], a.0[2], a.0[3]]));
            word(src) + word(dst)
        }
        Family::V6 => sum(&dst.0, sum(&src.0, 0)),
    };
    acc + u64::from(proto) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

/// RFC 1624 incremental update of checksum `csum` for the bytes `old` becoming `new`
/// (equal lengths, 16-bit words from an even offset), as `inet_proto_csum_replace*` does.
pub fn replace(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u64::from(!csum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let ow = u16::from_be_bytes([o[0], *o.get(1).unwrap_or(&0)]);
        let nw = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
        acc += u64::from(!ow) + u64::from(nw);
    }
    finish(acc)
}

/// Sets the header checksum of the IPv4 header at the start of `ip`.
pub fn set_ipv4_header(ip: &mut [u8]) {
    let ihl = (usize::from(ip[0] & 0x0f) * 4).min(ip.len());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = finish(sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The checksum of a transport segment whose checksum field is zero: over a pseudo-header
/// for all but ICMP for IPv4.
pub fn transport(family: Family, src: Addr, dst: Addr, proto: u8, segment: &[u8]) -> u16 {
    let acc = if proto == 1 {
        0
    } else {
        pseudo_header(family, src, dst, proto, segment.len() as u32)
    };
    finish(sum(segment, acc))
}

/// True when the segment (checksum field included) sums to zero with its pseudo-header.
///
/// ICMP for IPv4 has no pseudo-header: pass `with_pseudo = false`.
#[inline]
pub fn verify(
    family: Family,
    src: Addr,
    dst: Addr,
    proto: u8,
    segment: &[u8],
    with_pseudo: bool,
) -> bool {
    let acc = if with_pseudo {
        pseudo_header(family, src, dst, proto, segment.len() as u32)
    } else {
        0
    };
    finish(sum(segment, acc)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(&data, 0)), !0xddf2);
    }

    #[test]
    fn an_incremental_update_equals_a_new_sum() {
        let mut data = [0x45u8, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
        let before = finish(sum(&data, 0));
        let new = [0xab, 0xcd, 0xef, 0x01];
        let after = replace(before, &data[4..8], &new);
        data[4..8].copy_from_slice(&new);
        assert_eq!(after, finish(sum(&data, 0)));
    }

    /// The sum word by word, as RFC 1071 defines it.
    fn sum_by_16_bits(data: &[u8]) -> u16 {
        let mut acc = 0u64;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        finish(acc)
    }

    proptest::proptest! {
        #[test]
        fn eight_bytes_at_a_time_is_the_sum_by_16_bits(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..1600),
        ) {
            proptest::prop_assert_eq!(finish(sum(&data, 0)), sum_by_16_bits(&data));
        }
    }

    proptest::proptest! {
        #[test]
        fn the_pseudo_header_is_the_sum_of_its_bytes(
            src in proptest::array::uniform16(proptest::num::u8::ANY),
            dst in proptest::array::uniform16(proptest::num::u8::ANY),
            proto in proptest::num::u8::ANY,
            len in proptest::num::u32::ANY,
            v6 in proptest::bool::ANY,
        ) {
            // RFC 768's and RFC 8200's layouts, summed word by word.
            let (family, n) = if v6 { (Family::V6, 16) } else { (Family::V4, 4) };
            let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
            s[..n].copy_from_slice(&src[..n]);
            d[..n].copy_from_slice(&dst[..n]);
            let mut bytes = [&s[..n], &d[..n]].concat();
            if v6 {
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, proto]);
            } else {
                bytes.extend_from_slice(&[0, proto]);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
                // A length past 16 bits (never on the wire for IPv4) counts its top half too.
                bytes.extend_from_slice(&((len >> 16) as u16).to_be_bytes());
            }
            let fast = finish(pseudo_header(family, Addr(s), Addr(d), proto, len));
            proptest::prop_assert_eq!(fast, sum_by_16_bits(&bytes));
        }
    }

    #[test]
    fn all_ones_words_fold_to_zero_not_to_ffff() {
        // A sum that folds to 0xffff complements to 0: what a correct checksum makes.
        let data = [0xff; 6];
        assert_eq!(finish(sum(&data, 0)), sum_by_16_bits(&data));
        assert_eq!(finish(sum(&data, 0)), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab], 0), 0xab00);
    }
}
