//! Packets in: capture files, link layers and direction.
//!
//! [`Capture::open`] reads a pcap or pcapng file (gzip-compressed too, micro- or
//! nanosecond timestamps, any `if_tsresol`), and [`merge`] interleaves several by time.
//! Each [`Frame`] carries the IP datagram with its link layer removed ([`link`]: Ethernet
//! with 802.1Q/802.1ad tags, Linux cooked SLL and SLL2, raw IP, BSD loopback) and, when the
//! capture says so, the packet's direction (SLL/SLL2 packet type, pcapng `epb_flags`).
//!
//! A damaged file is read up to the damage: [`Capture::damage`] then names the file and the
//! byte offset, so callers process what came before and report the rest.

pub mod link;
pub mod writer;

use flate2::read::GzDecoder;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use link::{Direction, LinkError, LinkMeta};
pub use writer::RawIpWriter;

/// A capture that could not be read, or the point where reading stopped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{path}: at byte {offset}: {reason}")]
pub struct CaptureError {
    /// The file.
    pub path: PathBuf,
    /// Byte offset (in the decompressed stream for gzip files) where the problem starts.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// One captured packet, located in its file's buffer.
#[derive(Clone, Copy, Debug)]
struct Record {
    time: u64,
    start: u32,
    len: u32,
    linktype: u32,
    direction: Option<Direction>,
}

/// A capture file read into memory.
pub struct Capture {
    path: PathBuf,
    bytes: Vec<u8>,
    records: Vec<Record>,
    damage: Option<CaptureError>,
}

/// One packet with its link layer decoded.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the epoch.
    pub time: u64,
    /// The bytes from the link layer on.
    pub data: &'a [u8],
    /// The file's link type for this packet.
    pub linktype: u32,
    /// Direction, when the capture records it.
    pub direction: Option<Direction>,
    /// Which of the merged files it came from.
    pub file: usize,
    /// Its position in that file (0-based).
    pub index: usize,
}

impl Frame<'_> {
    /// The IP datagram and the direction the link layer gives, if any.
    pub fn ip(&self) -> Result<(&[u8], Option<Direction>), LinkError> {
        let (ip, dir) = link::strip(self.linktype, self.data)?;
        Ok((ip, self.direction.or(dir)))
    }

    /// The link-layer facts of the frame.
    pub fn link(&self) -> LinkMeta {
        link::meta(self.linktype, self.data)
    }
}

impl Capture {
    /// Reads a capture file. An unreadable or unrecognisable file is an error; damage
    /// after a valid header is recorded in [`Capture::damage`] and the packets before it kept.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let err = |offset: u64, reason: String| CaptureError {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let raw = std::fs::read(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
        Self::from_bytes(path, raw)
    }

    /// Reads a capture from bytes already in memory (`path` names it in errors).
    pub fn from_bytes(path: &Path, raw: Vec<u8>) -> Result<Capture, CaptureError> {
        let mut damage = None;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let mut dec = GzDecoder::new(&raw[..]);
            let mut buf = [0u8; 65536];
            loop {
                match dec.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => {
                        damage = Some(CaptureError {
                            path: path.to_path_buf(),
                            offset: out.len() as u64,
                            reason: format!("gzip stream damaged: {e}"),
                        });
                        break;
                    }
                }
            }
            out
        } else {
            raw
        };
        let mut cap = Capture {
            path: path.to_path_buf(),
            bytes: Vec::new(),
            records: Vec::new(),
            damage: None,
        };
        let parsed = if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
            cap.index_pcapng(&bytes)
        } else {
            cap.index_pcap(&bytes)
        };
        if let Err(e) = parsed {
            if cap.records.is_empty() && e.offset == 0 {
                return Err(e);
            }
            cap.damage = Some(e);
        }
        // A gzip error is further along than any damage found in what it did produce.
        if cap.damage.is_none() {
            cap.damage = damage;
        }
        cap.bytes = bytes;
        Ok(cap)
    }

    fn error(&self, offset: usize, reason: impl Into<String>) -> CaptureError {
        CaptureError {
            path: self.path.clone(),
            offset: offset as u64,
            reason: reason.into(),
        }
    }

    fn index_pcap(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        let (mut rest, parser) = PcapParser::new(bytes)
            .map_err(|e| self.error(0, format!("not a pcap or pcapng file ({e})")))?;
        let linktype = u32::from(parser.header().datalink);
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            match parser.next_packet(rest) {
                Ok((r, pkt)) => {
                    let data_len = pkt.data.len();
                    let start = bytes.len() - r.len() - data_len;
                    self.records.push(Record {
                        time: pkt.timestamp.as_nanos() as u64,
                        start: start as u32,
                        len: data_len as u32,
                        linktype,
                        direction: None,
                    });
                    rest = r;
                }
                Err(PcapError::IncompleteBuffer) => {
                    return Err(self.error(at, "truncated packet record"));
                }
                Err(e) => return Err(self.error(at, format!("corrupt packet record ({e})"))),
            }
        }
        Ok(())
    }

    fn index_pcapng(&mut self, bytes: &[u8]) -> Result<(), CaptureError> {
        let (mut rest, mut parser) = PcapNgParser::new(bytes)
            .map_err(|e| self.error(0, format!("bad pcapng section header ({e})")))?;
        // (linktype, ticks per second) of each interface of the current section.
        let mut ifaces: Vec<(u32, u64)> = Vec::new();
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let (r, block) = match parser.next_block(rest) {
                Ok(v) => v,
                Err(PcapError::IncompleteBuffer) => return Err(self.error(at, "truncated block")),
                Err(e) => return Err(self.error(at, format!("corrupt block ({e})"))),
            };
            match block {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let mut per_sec = 1_000_000u64;
                    for o in &idb.options {
                        if let InterfaceDescriptionOption::IfTsResol(res) = o {
                            per_sec = if res & 0x80 == 0 {
                                10u64.saturating_pow(u32::from(*res))
                            } else {
                                1u64 << (res & 0x7f).min(63)
                            };
                        }
                    }
                    ifaces.push((u32::from(idb.linktype), per_sec.max(1)));
                }
                Block::EnhancedPacket(epb) => {
                    let Some(&(linktype, per_sec)) = ifaces.get(epb.interface_id as usize) else {
                        return Err(self.error(
                            at,
                            format!("packet names undeclared interface {}", epb.interface_id),
                        ));
                    };
                    let ticks = epb.timestamp.as_nanos();
                    let time = (ticks * 1_000_000_000 / u128::from(per_sec)) as u64;
                    let mut direction = None;
                    for o in &epb.options {
                        if let EnhancedPacketOption::Flags(f) = o {
                            direction = match f & 3 {
                                1 => Some(Direction::Incoming),
                                2 => Some(Direction::Outgoing),
                                _ => None,
                            };
                        }
                    }
                    let data_ptr = epb.data.as_ptr() as usize - bytes.as_ptr() as usize;
                    self.records.push(Record {
                        time,
                        start: data_ptr as u32,
                        len: epb.data.len() as u32,
                        linktype,
                        direction,
                    });
                }
                Block::SimplePacket(spb) => {
                    let Some(&(linktype, _)) = ifaces.first() else {
                        return Err(self.error(at, "simple packet before any interface"));
                    };
                    let data_ptr = spb.data.as_ptr() as usize - bytes.as_ptr() as usize;
                    // No timestamp: it takes the previous packet's time.
                    let time = self.records.last().map_or(0, |r| r.time);
                    self.records.push(Record {
                        time,
                        start: data_ptr as u32,
                        len: spb.data.len() as u32,
                        linktype,
                        direction: None,
                    });
                }
                _ => {}
            }
            rest = r;
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Packets read.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no packet was read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Where reading stopped early, if it did.
    pub fn damage(&self) -> Option<&CaptureError> {
        self.damage.as_ref()
    }

    /// The packet at `index`.
    pub fn frame(&self, file: usize, index: usize) -> Frame<'_> {
        let r = self.records[index];
        Frame {
            time: r.time,
            data: &self.bytes[r.start as usize..(r.start + r.len) as usize],
            linktype: r.linktype,
            direction: r.direction,
            file,
            index,
        }
    }

    fn time(&self, index: usize) -> u64 {
        self.records[index].time
    }
}

/// The packets of several captures in time order; ties keep file order, then file position.
pub fn merge(captures: &[Capture]) -> impl Iterator<Item = Frame<'_>> + '_ {
    let mut order: Vec<(u64, u32, u32)> = Vec::new();
    for (f, c) in captures.iter().enumerate() {
        order.extend((0..c.len()).map(|i| (c.time(i), f as u32, i as u32)));
    }
    // Within one file the order of the file wins even if timestamps step back.
    if captures.len() > 1 {
        order.sort_by_key(|&(t, f, i)| (t, f, i));
    }
    order
        .into_iter()
        .map(move |(_, f, i)| captures[f as usize].frame(f as usize, i as usize))
}

#[cfg(test)]
mod tests;
