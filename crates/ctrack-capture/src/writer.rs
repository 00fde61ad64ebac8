//! Packets out: a pcap of raw IP datagrams with nanosecond timestamps (`ctrack replay --out`).

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use std::io::Write;
use std::time::Duration;

/// Writes IP datagrams, one per record, link type RAW.
pub struct RawIpWriter<W: Write> {
    inner: PcapWriter<W>,
}

impl<W: Write> RawIpWriter<W> {
    /// Starts the file.
    pub fn new(w: W) -> std::io::Result<Self> {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 262_144,
            ..PcapHeader::default()
        };
        let inner = PcapWriter::with_header(w, header).map_err(std::io::Error::other)?;
        Ok(RawIpWriter { inner })
    }

    /// One datagram sent at `time` (ns since the epoch).
    pub fn write(&mut self, time: u64, ip: &[u8]) -> std::io::Result<()> {
        let pkt = PcapPacket::new(Duration::from_nanos(time), ip.len() as u32, ip);
        self.inner
            .write_packet(&pkt)
            .map_err(std::io::Error::other)?;
        Ok(())
    }

    /// Flushes and gives the writer back.
    pub fn finish(self) -> W {
        self.inner.into_writer()
    }
}
