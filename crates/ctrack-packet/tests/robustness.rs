//! Whatever the bytes, parsing returns a value or an error: never a panic.

use ctrack_packet::{Datagram, Family, TcpView, Tuple};
use proptest::prelude::*;

/// An IPv4 or IPv6 header start followed by arbitrary bytes, so parsing gets past the
/// version check often.
fn ipish() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x00]),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(first, rest)| {
            let mut v = vec![first];
            v.extend(rest);
            v
        })
}

/// A valid IPv4 header of 20 to 60 bytes with arbitrary fields (checksum made right),
/// then up to 40 bytes of payload: what `ip_rcv` lets through.
fn ipv4_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        5u8..=15,
        prop::collection::vec(any::<u8>(), 60),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(ihl, fields, payload)| {
            let hlen = usize::from(ihl) * 4;
            let mut v = fields[..hlen].to_vec();
            v[0] = 0x40 | ihl;
            v.extend(payload);
            let total = v.len() as u16;
            v[2..4].copy_from_slice(&total.to_be_bytes());
            v[10..12].fill(0);
            let c = ctrack_packet::checksum::finish(ctrack_packet::checksum::sum(&v[..hlen], 0));
            v[10..12].copy_from_slice(&c.to_be_bytes());
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The IPv4 header is read in place; `etherparse` reads the same fields the same way.
    #[test]
    fn ipv4_fields_read_as_etherparse_reads_them(bytes in ipv4_datagram()) {
        let d = Datagram::parse(&bytes).expect("a valid IPv4 datagram");
        let h = etherparse::Ipv4HeaderSlice::from_slice(&bytes).expect("etherparse reads it");
        prop_assert_eq!(d.src, ctrack_packet::Addr::v4(h.source()));
        prop_assert_eq!(d.dst, ctrack_packet::Addr::v4(h.destination()));
        prop_assert_eq!(d.proto, h.protocol().0);
        let tos = h.dcp().value() << 2 | h.ecn().value();
        prop_assert_eq!((d.ttl, d.tos), (h.ttl(), tos));
        prop_assert_eq!(d.l4_offset, usize::from(h.ihl()) * 4);
        prop_assert_eq!(d.len(), u32::from(h.total_len()));
        let offset = u32::from(h.fragments_offset().value()) * 8;
        match d.fragment {
            Some(f) => {
                prop_assert_eq!(f.id, u32::from(h.identification()));
                prop_assert_eq!((f.offset, f.more), (offset, h.more_fragments()));
            }
            None => prop_assert!(offset == 0 && !h.more_fragments()),
        }
    }

    #[test]
    fn datagram_parse_never_panics(bytes in ipish()) {
        if let Ok(d) = Datagram::parse(&bytes) {
            let _ = Tuple::from_datagram(&d);
            prop_assert!(d.l4_offset <= d.bytes.len());
            if let Some(t) = TcpView::new(d.l4()) {
                let _ = t.parse_options();
                let _ = t.highest_sack(t.ack());
                let _ = t.end();
            }
        }
    }

    #[test]
    fn quoted_tuples_never_panic(bytes in ipish()) {
        let _ = Tuple::from_quoted(Family::V4, &bytes);
        let _ = Tuple::from_quoted(Family::V6, &bytes);
    }

    #[test]
    fn tcp_options_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Some(t) = TcpView::new(&bytes) {
            let _ = t.parse_options();
            let _ = t.highest_sack(0);
        }
    }
}
