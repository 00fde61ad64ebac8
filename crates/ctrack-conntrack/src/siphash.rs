//! SipHash-1-3 of the table's IPv4 keys: 15 bytes (two ends of six bytes each, the
//! protocol and the zone), from a state keyed once.
//!
//! Every value here is `siphasher`'s `SipHasher13` of the same key and bytes (the tests hold
//! them to it); only the way to it differs. The message's length is fixed, so nothing is
//! buffered; at 15 bytes its last block holds its last seven bytes beside the length, so it
//! takes two compression rounds where 16 bytes take three. A batch's keys are hashed four
//! at a time in the lanes of AVX2 registers where the CPU has them: SipHash's rounds are
//! additions, rotations and XORs of 64-bit words, which four lanes do as cheaply as one.

/// SipHash's four state words once the key `(k0, k1)` is taken in.
pub(crate) fn keyed((k0, k1): (u64, u64)) -> [u64; 4] {
    [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ]
}

/// A 15-byte message's length, as its last block holds it in the top byte.
const LENGTH: u64 = 15 << 56;

/// SipHash-1-3 of a 15-byte message given as its first eight bytes and its last seven (a
/// little-endian word whose top byte is zero), from the state [`keyed`] makes.
#[inline]
pub(crate) fn fifteen_bytes(keyed: &[u64; 4], m0: u64, m1: u64) -> u64 {
    debug_assert_eq!(m1 >> 56, 0, "seven bytes");
    let mut v = *keyed;
    for m in [m0, m1 | LENGTH] {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..3 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// [`fifteen_bytes`] of four messages, each `[m0, m1]`.
#[inline]
pub(crate) fn fifteen_bytes_x4(keyed: &[u64; 4], words: [[u64; 2]; 4]) -> [u64; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") {
            // SAFETY: the CPU has AVX2, AVX-512F and AVX-512VL, checked just now.
            return unsafe { avx2::fifteen_bytes_x4_rotating(keyed, words) };
        }
        if has!("avx2") {
            // SAFETY: the CPU has AVX2, checked just now.
            return unsafe { avx2::fifteen_bytes_x4(keyed, words) };
        }
    }
    fifteen_bytes_x4_scalar(keyed, words)
}

/// [`fifteen_bytes_x4`] one message after the other, for a CPU without AVX2.
fn fifteen_bytes_x4_scalar(keyed: &[u64; 4], words: [[u64; 2]; 4]) -> [u64; 4] {
    words.map(|[m0, m1]| fifteen_bytes(keyed, m0, m1))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi64, _mm256_or_si256, _mm256_set1_epi64x, _mm256_set_epi64x,
        _mm256_setr_epi8, _mm256_shuffle_epi32, _mm256_shuffle_epi8, _mm256_slli_epi64,
        _mm256_srli_epi64, _mm256_storeu_si256, _mm256_xor_si256,
    };

    /// Rotates each lane left by `L` bits (`R` is `64 - L`: a const generic cannot be
    /// computed from another here).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
    }

    /// Rotates each lane by 32 bits: its two halves swapped, one instruction.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl32(x: __m256i) -> __m256i {
        _mm256_shuffle_epi32::<0b10_11_00_01>(x)
    }

    /// Rotates each lane left by 16 bits: a byte shuffle, one instruction.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl16(x: __m256i) -> __m256i {
        let order = _mm256_setr_epi8(
            6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13, 6, 7, 0, 1, 2, 3, 4, 5, 14, 15,
            8, 9, 10, 11, 12, 13,
        );
        _mm256_shuffle_epi8(x, order)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn round(v: &mut [__m256i; 4]) {
        v[0] = _mm256_add_epi64(v[0], v[1]);
        v[1] = _mm256_xor_si256(rotl::<13, 51>(v[1]), v[0]);
        v[0] = rotl32(v[0]);
        v[2] = _mm256_add_epi64(v[2], v[3]);
        v[3] = _mm256_xor_si256(rotl16(v[3]), v[2]);
        v[0] = _mm256_add_epi64(v[0], v[3]);
        v[3] = _mm256_xor_si256(rotl::<21, 43>(v[3]), v[0]);
        v[2] = _mm256_add_epi64(v[2], v[1]);
        v[1] = _mm256_xor_si256(rotl::<17, 47>(v[1]), v[2]);
        v[2] = rotl32(v[2]);
    }

    /// [`super::fifteen_bytes`] of four messages at once, one in each 64-bit lane.
    #[target_feature(enable = "avx2")]
    pub(super) fn fifteen_bytes_x4(keyed: &[u64; 4], words: [[u64; 2]; 4]) -> [u64; 4] {
        lanes(keyed, words)
    }

    /// The same, made where AVX-512VL rotates a lane in one instruction (`vprolq`), which
    /// the compiler picks for the shifts and OR of `rotl`: three rotations of each round
    /// take one instruction instead of three.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    pub(super) fn fifteen_bytes_x4_rotating(keyed: &[u64; 4], words: [[u64; 2]; 4]) -> [u64; 4] {
        lanes(keyed, words)
    }

    /// The body of both, inlined into each and compiled for its instructions.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(keyed: &[u64; 4], words: [[u64; 2]; 4]) -> [u64; 4] {
        // Each word read as the eight bytes its caller has just stored: merged into wider
        // loads, as the compiler would, the reads waited for the stores to reach the cache
        // instead of taking their values (perf: a fifth of this function's time).
        // SAFETY: a read of an initialised `u64` of `words`.
        let word = |m: usize, i: usize| unsafe { std::ptr::read_volatile(&words[m][i]) } as i64;
        let lanes = |i: usize| {
            // Lane 0 is the first message: `set` takes its arguments from the top lane down.
            _mm256_set_epi64x(word(3, i), word(2, i), word(1, i), word(0, i))
        };
        let last = _mm256_or_si256(lanes(1), _mm256_set1_epi64x(super::LENGTH as i64));
        let mut v = keyed.map(|k| _mm256_set1_epi64x(k as i64));
        for m in [lanes(0), last] {
            v[3] = _mm256_xor_si256(v[3], m);
            round(&mut v);
            v[0] = _mm256_xor_si256(v[0], m);
        }
        v[2] = _mm256_xor_si256(v[2], _mm256_set1_epi64x(0xff));
        for _ in 0..3 {
            round(&mut v);
        }
        let h = _mm256_xor_si256(_mm256_xor_si256(v[0], v[1]), _mm256_xor_si256(v[2], v[3]));
        let mut out = [0u64; 4];
        // SAFETY: `out` is 32 bytes, what an unaligned store writes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast::<__m256i>(), h) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use siphasher::sip::SipHasher13;
    use std::hash::Hasher;

    /// The crate's SipHash-1-3 of the 15 bytes `m0` and the low seven of `m1` stand for.
    fn crate_siphash13(k0: u64, k1: u64, m0: u64, m1: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(&m0.to_le_bytes());
        h.write(&m1.to_le_bytes()[..7]);
        h.finish()
    }

    /// Seven bytes as the last word of a message holds them.
    fn seven(m: u64) -> u64 {
        m & ((1 << 56) - 1)
    }

    proptest! {
        /// The 15-byte SipHash-1-3 is the crate's, for any key and bytes.
        #[test]
        fn fifteen_bytes_is_siphash13(k0 in any::<u64>(), k1 in any::<u64>(), m0 in any::<u64>(), m1 in any::<u64>()) {
            let m1 = seven(m1);
            prop_assert_eq!(fifteen_bytes(&keyed((k0, k1)), m0, m1), crate_siphash13(k0, k1, m0, m1));
        }

        /// Four at once, each lane is the crate's SipHash-1-3 of its own words, in order:
        /// the path this CPU takes, and each other one it can.
        #[test]
        fn four_lanes_are_siphash13(k0 in any::<u64>(), k1 in any::<u64>(), words in any::<[[u64; 2]; 4]>()) {
            let words = words.map(|[m0, m1]| [m0, seven(m1)]);
            let want = words.map(|[m0, m1]| crate_siphash13(k0, k1, m0, m1));
            let keyed = keyed((k0, k1));
            prop_assert_eq!(fifteen_bytes_x4(&keyed, words), want);
            for (name, path) in paths() {
                prop_assert_eq!(path(&keyed, words), want, "{}", name);
            }
        }
    }

    type X4 = fn(&[u64; 4], [[u64; 2]; 4]) -> [u64; 4];

    /// Every path of [`fifteen_bytes_x4`] this CPU can run.
    fn paths() -> Vec<(&'static str, X4)> {
        let mut paths: Vec<(&'static str, X4)> = vec![("scalar", fifteen_bytes_x4_scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") {
                // SAFETY: the CPU has AVX2.
                paths.push(("avx2", |k, w| unsafe { avx2::fifteen_bytes_x4(k, w) }));
            }
            if has!("avx2") && has!("avx512f") && has!("avx512vl") {
                // SAFETY: the CPU has AVX2, AVX-512F and AVX-512VL.
                paths.push(("avx512vl", |k, w| unsafe {
                    avx2::fifteen_bytes_x4_rotating(k, w)
                }));
            }
        }
        paths
    }

    /// The lanes' path is the one under test above wherever CI runs: a machine without
    /// AVX2 would test only the scalar fallback, and should say so rather than pass.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_machine_tests_the_avx2_lanes() {
        assert!(
            std::arch::is_x86_feature_detected!("avx2"),
            "no AVX2 here: four_lanes_are_siphash13 tested only the scalar fallback"
        );
    }
}
