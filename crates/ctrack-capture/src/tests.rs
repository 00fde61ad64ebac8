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
