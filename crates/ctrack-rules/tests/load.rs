//! Loading and printing rulesets. The full comparison with real iptables-save runs in the
//! kernel suite (`tests/kernel/rules_roundtrip.py`); these pin the canonical forms.

use ctrack_rules::{load, Backend};

fn fmt(text: &str) -> String {
    load(text, "t.rules").unwrap().save(false, Backend::Nft)
}

fn one_rule(rule: &str) -> String {
    let out = fmt(&format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD {rule}\nCOMMIT\n"));
    out.lines()
        .find(|l| l.starts_with("-A"))
        .unwrap()
        .to_string()
}

#[test]
fn canonical_forms_match_iptables_save() {
    let cases = [
        ("-p tcp --dport 22 --syn -j ACCEPT", "-A FORWARD -p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"),
        ("-m state --state ESTABLISHED,RELATED -j ACCEPT", "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT"),
        ("-s 10.0.0.0/255.0.0.0 ! -d 10.1.2.3 -p udp --sport 1000:2000", "-A FORWARD -s 10.0.0.0/8 ! -d 10.1.2.3/32 -p udp -m udp --sport 1000:2000"),
        ("-p icmp --icmp-type echo-request -m limit --limit 5/min --limit-burst 10 -j ACCEPT", "-A FORWARD -p icmp -m icmp --icmp-type 8 -m limit --limit 5/min --limit-burst 10 -j ACCEPT"),
        ("-m comment --comment \"a b\" -s 1.2.3.4 -j DROP", "-A FORWARD -s 1.2.3.4/32 -m comment --comment \"a b\" -j DROP"),
        ("-p tcp -j REJECT", "-A FORWARD -p tcp -j REJECT --reject-with icmp-port-unreachable"),
        ("-p 47 -j ACCEPT", "-A FORWARD -p gre -j ACCEPT"),
        ("-m tos --tos 0x10 -j ACCEPT", "-A FORWARD -m tos --tos 0x10/0xff -j ACCEPT"),
        ("-j LOG --log-level 4 --log-prefix \"DROP: \"", "-A FORWARD -j LOG --log-prefix \"DROP: \""),
        ("-m connbytes --connbytes 1000: --connbytes-dir both --connbytes-mode bytes", "-A FORWARD -m connbytes --connbytes 1000 --connbytes-mode bytes --connbytes-dir both"),
    ];
    for (input, want) in cases {
        assert_eq!(one_rule(input), want, "from {input}");
    }
}

#[test]
fn address_lists_expand_to_one_rule_each() {
    let out = fmt("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 1.1.1.1,2.2.2.2 -j DROP\nCOMMIT\n");
    assert!(out.contains("-A INPUT -s 1.1.1.1/32 -j DROP\n-A INPUT -s 2.2.2.2/32 -j DROP\n"));
}

#[test]
fn scripts_of_iptables_commands_load() {
    let rs = load(
        "#!/bin/sh\niptables -P INPUT DROP\niptables -N LOGGING\niptables -A INPUT -j LOGGING\niptables -t raw -A PREROUTING -p udp --dport 53 -j NOTRACK\niptables -I INPUT 1 -i lo -j ACCEPT\n",
        "fw.sh",
    )
    .unwrap();
    let out = rs.save(false, Backend::Nft);
    assert!(out.contains(":INPUT DROP [0:0]"));
    assert!(out.contains("-A INPUT -i lo -j ACCEPT\n-A INPUT -j LOGGING"));
    assert!(out.contains("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK"));
}

#[test]
fn errors_name_file_line_and_option() {
    let e = load(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 --bogus\nCOMMIT\n",
        "fw.rules",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "fw.rules:3: option \"--bogus\": unknown option"
    );
    let e = load(
        "*filter\n-A INPUT -m geoip --src-cc XX -j DROP\nCOMMIT\n",
        "fw.rules",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fw.rules:2: option \"-m\": Couldn't load match `geoip'"),
        "{e}"
    );
    let e = load(
        "*filter\n-A INPUT -j TCPMSS --clamp-mss-to-pmtu\nCOMMIT\n",
        "fw.rules",
    )
    .unwrap_err();
    assert!(e.to_string().contains("TCPMSS"), "{e}");
    let e = load("iptables -A INPUT -j ACCEPT\necho done\n", "fw.sh").unwrap_err();
    assert!(e.to_string().starts_with("fw.sh:2:"), "{e}");
}

#[test]
fn ipv6_rulesets_are_recognised() {
    let rs = load("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s fe80::/10 -p ipv6-icmp -j ACCEPT\nCOMMIT\n", "v6").unwrap();
    assert_eq!(rs.family, ctrack_packet::Family::V6);
    assert!(rs
        .save(false, Backend::Nft)
        .contains("-A INPUT -s fe80::/10 -p ipv6-icmp -j ACCEPT"));
}
