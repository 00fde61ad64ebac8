//! The Internet checksum (RFC 1071) over transport segments and their pseudo-headers.
//!
//! Conntrack verifies TCP, UDP and ICMP checksums of packets arriving at PREROUTING when
//! `nf_conntrack_checksum=1`; this is the one place that computes them.

use crate::{Addr, Family};

/// Adds `data` to a running one's-complement sum (not yet folded).
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds a running sum to 16 bits and complements it.
pub fn finish(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The pseudo-header sum for a transport segment of `len` bytes.
pub fn pseudo_header(family: Family, src: Addr, dst: Addr, proto: u8, len: u32) -> u64 {
    let n = match family {
        Family::V4 => 4,
        Family::V6 => 16,
    };
    let mut acc = sum(&src.0[..n], 0);
    acc = sum(&dst.0[..n], acc);
    acc + u64::from(proto) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

/// True when the segment (checksum field included) sums to zero with its pseudo-header.
///
/// ICMP for IPv4 has no pseudo-header: pass `with_pseudo = false`.
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
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab], 0), 0xab00);
    }
}
