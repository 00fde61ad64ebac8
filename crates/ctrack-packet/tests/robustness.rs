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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

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
