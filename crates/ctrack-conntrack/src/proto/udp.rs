//! UDP, UDP-Lite and GRE: unreplied and stream timeouts.
//!
//! A flow that has seen a reply and is still sending more than two seconds after its first
//! packet is a stream: it gets the stream timeout and becomes ASSURED
//! (`nf_conntrack_udp_packet`). A single request and reply stays on the short timeout.

use super::Verdict;
use crate::Settings;

const STREAM_AFTER_NS: u64 = 2_000_000_000;

/// When a UDP-like flow may be called a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpConn {
    /// Packet time after which traffic with a reply makes a stream.
    pub stream_ts: u64,
}

impl UdpConn {
    /// State for a flow whose first packet is at `now`.
    pub fn new(now: u64) -> UdpConn {
        UdpConn {
            stream_ts: now + STREAM_AFTER_NS,
        }
    }
}

/// Timeouts of one UDP-like protocol.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Before the flow is a stream.
    pub unreplied: u64,
    /// Once it is.
    pub stream: u64,
}

impl Timeouts {
    /// UDP and UDP-Lite.
    pub fn udp(s: &Settings) -> Timeouts {
        Timeouts {
            unreplied: s.udp_timeout,
            stream: s.udp_timeout_stream,
        }
    }
    /// GRE.
    pub fn gre(s: &Settings) -> Timeouts {
        Timeouts {
            unreplied: s.gre_timeout,
            stream: s.gre_timeout_stream,
        }
    }
}

/// The tracker's decision: the timeout, and whether the flow becomes ASSURED now.
pub fn packet(
    c: &UdpConn,
    seen_reply: bool,
    assured: bool,
    now: u64,
    t: Timeouts,
) -> (Verdict, bool) {
    if !seen_reply {
        return (
            Verdict::Accept {
                timeout: t.unreplied,
            },
            false,
        );
    }
    // time_after(jiffies, stream_ts): strictly later.
    if now > c.stream_ts {
        (Verdict::Accept { timeout: t.stream }, !assured)
    } else {
        (
            Verdict::Accept {
                timeout: t.unreplied,
            },
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_is_not_a_stream() {
        let s = Settings::default();
        let c = UdpConn::new(0);
        let (v, assure) = packet(&c, false, false, 0, Timeouts::udp(&s));
        assert_eq!(
            (v, assure),
            (
                Verdict::Accept {
                    timeout: s.udp_timeout
                },
                false
            )
        );
        // A later packet within two seconds, reply seen: still not a stream.
        let (v, assure) = packet(&c, true, false, 1_900_000_000, Timeouts::udp(&s));
        assert_eq!(
            (v, assure),
            (
                Verdict::Accept {
                    timeout: s.udp_timeout
                },
                false
            )
        );
    }

    #[test]
    fn traffic_after_two_seconds_with_reply_is_a_stream() {
        let s = Settings::default();
        let c = UdpConn::new(0);
        let (v, assure) = packet(&c, true, false, 2_000_000_001, Timeouts::udp(&s));
        assert_eq!(
            (v, assure),
            (
                Verdict::Accept {
                    timeout: s.udp_timeout_stream
                },
                true
            )
        );
        let (_, assure) = packet(&c, true, true, 3_000_000_000, Timeouts::udp(&s));
        assert!(!assure, "already assured");
        let (v, _) = packet(&c, false, false, 9_000_000_000, Timeouts::udp(&s));
        assert_eq!(
            v,
            Verdict::Accept {
                timeout: s.udp_timeout
            },
            "no reply, no stream"
        );
    }
}
