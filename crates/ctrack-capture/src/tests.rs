use super::*;

fn pcap_header(nano: bool, linktype: u32) -> Vec<u8> {
    let magic: u32 = if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut h = magic.to_le_bytes().to_vec();
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

fn record(sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
    let mut r = sec.to_le_bytes().to_vec();
    r.extend_from_slice(&frac.to_le_bytes());
    r.extend_from_slice(&(data.len() as u32).to_le_bytes());
    r.extend_from_slice(&(data.len() as u32).to_le_bytes());
    r.extend_from_slice(data);
    r
}

#[test]
fn reads_micro_and_nano_pcap() {
    let mut f = pcap_header(false, link::RAW);
    f.extend(record(10, 5, &[0x45, 0, 0, 20]));
    let c = Capture::from_bytes(Path::new("a.pcap"), f).unwrap();
    assert_eq!(c.frame(0, 0).time, 10_000_005_000);
    let mut f = pcap_header(true, link::RAW);
    f.extend(record(10, 5, &[0x45, 0, 0, 20]));
    let c = Capture::from_bytes(Path::new("a.pcap"), f).unwrap();
    assert_eq!(c.frame(0, 0).time, 10_000_000_005);
}

#[test]
fn truncated_file_keeps_what_came_before() {
    let mut f = pcap_header(false, link::RAW);
    f.extend(record(1, 0, &[0x45; 20]));
    let good = f.len();
    f.extend(record(2, 0, &[0x45; 20]));
    f.truncate(f.len() - 5);
    let c = Capture::from_bytes(Path::new("t.pcap"), f).unwrap();
    assert_eq!(c.len(), 1);
    let d = c.damage().unwrap();
    assert_eq!(d.offset, good as u64);
    assert!(
        d.to_string()
            .starts_with(&format!("t.pcap: at byte {good}: ")),
        "{d}"
    );
}

#[test]
fn garbage_is_an_error_naming_the_file() {
    let e = Capture::from_bytes(Path::new("junk.bin"), b"hello world, no capture".to_vec())
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("junk.bin: at byte 0:"));
}

#[test]
fn strips_vlan_tags_and_cooked_headers() {
    let mut eth = vec![0u8; 12];
    eth.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00, 0x45]);
    assert_eq!(link::strip(link::ETHERNET, &eth).unwrap().0, &[0x45]);
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6];
    sll2.extend_from_slice(&[0; 8]);
    sll2.push(0x60);
    let (ip, dir) = link::strip(link::LINUX_SLL2, &sll2).unwrap();
    assert_eq!((ip, dir), (&[0x60u8][..], Some(Direction::Outgoing)));
    let arp = [0u8; 12]
        .iter()
        .chain(&[0x08, 0x06])
        .copied()
        .collect::<Vec<_>>();
    assert_eq!(
        link::strip(link::ETHERNET, &arp).unwrap_err(),
        LinkError::NotIp(0x0806)
    );
    assert_eq!(
        link::strip(link::NULL, &[2, 0, 0, 0, 0x45]).unwrap().0,
        &[0x45]
    );
}

#[test]
fn merges_files_by_time() {
    let mut a = pcap_header(false, link::RAW);
    a.extend(record(1, 0, &[0x45]));
    a.extend(record(3, 0, &[0x45]));
    let mut b = pcap_header(false, link::RAW);
    b.extend(record(2, 0, &[0x46]));
    let caps = vec![
        Capture::from_bytes(Path::new("a"), a).unwrap(),
        Capture::from_bytes(Path::new("b"), b).unwrap(),
    ];
    let files: Vec<usize> = merge(&caps).map(|f| f.file).collect();
    assert_eq!(files, vec![0, 1, 0]);
}

#[test]
fn reads_pcapng_with_nanosecond_resolution_and_direction_flags() {
    use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use std::borrow::Cow;
    use std::time::Duration;

    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 65535,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    })
    .unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 65535,
        options: vec![],
    })
    .unwrap();
    // The writer stores the raw tick count; with if_tsresol 9 a tick is a nanosecond.
    for (iface, ticks, flags) in [(0u32, 5_000_000_123u64, 1u32), (1, 7_000_001, 2)] {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: iface,
            timestamp: Duration::from_nanos(ticks),
            original_len: 1,
            data: Cow::Owned(vec![0x45]),
            options: vec![EnhancedPacketOption::Flags(flags)],
        })
        .unwrap();
    }
    let c = Capture::from_bytes(Path::new("x.pcapng"), w.into_inner()).unwrap();
    assert_eq!(c.len(), 2);
    let (a, b) = (c.frame(0, 0), c.frame(0, 1));
    assert_eq!(a.time, 5_000_000_123, "nanosecond resolution");
    assert_eq!(b.time, 7_000_001_000, "default microsecond resolution");
    assert_eq!(a.direction, Some(Direction::Incoming));
    assert_eq!(b.direction, Some(Direction::Outgoing));
    assert!(c.damage().is_none());
}

#[test]
fn reads_gzip_compressed_captures() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut f = pcap_header(false, link::RAW);
    f.extend(record(3, 0, &[0x45, 0, 0, 20]));
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&f).unwrap();
    let c = Capture::from_bytes(Path::new("a.pcap.gz"), gz.finish().unwrap()).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c.frame(0, 0).time, 3_000_000_000);
}

#[test]
fn cooked_v1_gives_direction_and_loopback_families() {
    let mut sll = vec![0, 4, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    sll.push(0x45);
    assert_eq!(
        link::strip(link::LINUX_SLL, &sll).unwrap(),
        (&[0x45u8][..], Some(Direction::Outgoing))
    );
    sll[1] = 0;
    assert_eq!(
        link::strip(link::LINUX_SLL, &sll).unwrap().1,
        Some(Direction::Incoming)
    );
    assert_eq!(
        link::strip(link::LOOP, &[0, 0, 0, 30, 0x60]).unwrap().0,
        &[0x60]
    );
    assert_eq!(
        link::strip(147, &[0]).unwrap_err(),
        LinkError::UnsupportedLinkType(147)
    );
}
