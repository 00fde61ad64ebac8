//! Table-driven tests of the TCP tracker: each row is a segment and the state, verdict and
//! timeout the kernel gives it.

use super::*;

const SEC: u64 = 1_000_000_000;

/// Builds a segment: flags, seq, ack, window, payload length, options.
fn seg(flags: u8, seq: u32, ack: u32, win: u16, payload: usize, opts: &[u8]) -> Vec<u8> {
    let doff = 20 + opts.len();
    assert_eq!(doff % 4, 0);
    let mut s = vec![0u8; doff + payload];
    s[0..2].copy_from_slice(&40000u16.to_be_bytes());
    s[2..4].copy_from_slice(&80u16.to_be_bytes());
    s[4..8].copy_from_slice(&seq.to_be_bytes());
    s[8..12].copy_from_slice(&ack.to_be_bytes());
    s[12] = ((doff / 4) as u8) << 4;
    s[13] = flags;
    s[14..16].copy_from_slice(&win.to_be_bytes());
    s[20..doff].copy_from_slice(opts);
    s
}

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;
/// MSS, SACK permitted, window scale 7.
const OPTS: [u8; 12] = [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0];

/// A connection driven through the tracker the way the core drives it.
struct Flow {
    conn: TcpConn,
    seen_reply: bool,
    assured: bool,
    confirmed: bool,
    s: Settings,
}

impl Flow {
    fn new() -> Flow {
        Flow::with(Settings::default())
    }
    fn with(s: Settings) -> Flow {
        Flow {
            conn: TcpConn::default(),
            seen_reply: false,
            assured: false,
            confirmed: false,
            s,
        }
    }

    /// One segment in direction `dir` (0 original, 1 reply).
    fn send(&mut self, dir: usize, bytes: &[u8]) -> Outcome {
        let v = TcpView::new(bytes).unwrap();
        if !self.confirmed {
            if let Err(e) = new(&mut self.conn, &v, &self.s) {
                return Outcome::verdict(Verdict::Invalid(e));
            }
        }
        let st = ConnStatus {
            seen_reply: self.seen_reply,
            assured: self.assured,
            fixed_timeout: false,
            expires_in: 400_000 * SEC,
            peer_seqadj: Default::default(),
        };
        let out = packet(&mut self.conn, dir, &v, st, &self.s);
        if !matches!(out.verdict, Verdict::Invalid(_)) {
            self.confirmed = true;
            if dir == 1 {
                self.seen_reply = true;
            }
        }
        self.assured |= out.assure;
        out
    }
}

fn accept(secs: u64) -> Verdict {
    Verdict::Accept {
        timeout: secs * SEC,
    }
}

/// One step of a table: direction, segment, expected state and verdict afterwards.
struct Step {
    dir: usize,
    seg: Vec<u8>,
    state: TcpState,
    verdict: Verdict,
    assured: bool,
}

/// The orderly close after a handshake: the client's FIN at `seq` (the server at 5001), the
/// server's FIN, the last ACK.
fn close(seq: u32) -> [Step; 3] {
    use TcpState::*;
    [
        step(
            0,
            seg(FIN | ACK, seq, 5001, 502, 0, &[]),
            FinWait,
            accept(120),
            true,
        ),
        step(
            1,
            seg(FIN | ACK, 5001, seq + 1, 509, 0, &[]),
            LastAck,
            accept(30),
            true,
        ),
        step(
            0,
            seg(ACK, seq + 1, 5002, 502, 0, &[]),
            TimeWait,
            accept(120),
            true,
        ),
    ]
}

fn step(dir: usize, seg: Vec<u8>, state: TcpState, verdict: Verdict, assured: bool) -> Step {
    Step {
        dir,
        seg,
        state,
        verdict,
        assured,
    }
}

fn run(flow: &mut Flow, steps: &[Step]) {
    for (i, st) in steps.iter().enumerate() {
        let out = flow.send(st.dir, &st.seg);
        assert_eq!(out.verdict, st.verdict, "step {i}: verdict");
        assert_eq!(flow.conn.state, st.state, "step {i}: state");
        assert_eq!(flow.assured, st.assured, "step {i}: assured");
    }
}

fn handshake() -> Vec<Step> {
    use TcpState::*;
    vec![
        step(
            0,
            seg(SYN, 1000, 0, 64240, 0, &OPTS),
            SynSent,
            accept(120),
            false,
        ),
        step(
            1,
            seg(SYN | ACK, 5000, 1001, 65160, 0, &OPTS),
            SynRecv,
            accept(60),
            false,
        ),
        step(
            0,
            seg(ACK, 1001, 5001, 502, 0, &[]),
            Established,
            accept(432000),
            true,
        ),
    ]
}

#[test]
fn handshake_assures_on_the_third_packet() {
    run(&mut Flow::new(), &handshake());
}

#[test]
fn fin_close_walks_through_the_closing_states() {
    use TcpState::*;
    let mut f = Flow::new();
    let mut steps = handshake();
    steps.extend([
        step(
            0,
            seg(PSH | ACK, 1001, 5001, 502, 5, &[]),
            Established,
            accept(300),
            true,
        ),
        step(
            1,
            seg(ACK, 5001, 1006, 509, 0, &[]),
            Established,
            accept(432000),
            true,
        ),
    ]);
    steps.extend(close(1006));
    run(&mut f, &steps);
    assert_ne!(
        f.conn.seen[0].flags & flag::CLOSE_INIT,
        0,
        "client closed first"
    );
}

#[test]
fn rst_answering_a_syn_kills_the_entry() {
    let mut f = Flow::new();
    f.send(0, &seg(SYN, 1000, 0, 64240, 0, &OPTS));
    let out = f.send(1, &seg(RST | ACK, 0, 1001, 0, 0, &[]));
    assert_eq!(out.verdict, Verdict::Kill);
    assert_eq!(f.conn.state, TcpState::Close);
}

#[test]
fn retransmitted_syn_does_not_refresh() {
    let mut f = Flow::new();
    f.send(0, &seg(SYN, 1000, 0, 64240, 0, &OPTS));
    let out = f.send(0, &seg(SYN, 1000, 0, 64240, 0, &OPTS));
    assert_eq!(out.verdict, Verdict::AcceptNoRefresh);
    assert_eq!(f.conn.state, TcpState::SynSent);
}

#[test]
fn simultaneous_open_goes_through_syn_sent2() {
    use TcpState::*;
    let mut f = Flow::new();
    run(
        &mut f,
        &[
            step(
                0,
                seg(SYN, 1000, 0, 64240, 0, &OPTS),
                SynSent,
                accept(120),
                false,
            ),
            step(
                1,
                seg(SYN, 5000, 0, 64240, 0, &OPTS),
                SynSent2,
                Verdict::AcceptNoRefresh,
                false,
            ),
        ],
    );
}

#[test]
fn loose_pickup_is_established_unreplied_with_the_unack_timeout() {
    let mut f = Flow::new();
    let out = f.send(0, &seg(PSH | ACK, 7000, 9000, 500, 10, &[]));
    assert_eq!(out.verdict, accept(300));
    assert_eq!(f.conn.state, TcpState::Established);
    assert!(!f.assured);
    // The answer makes it assured: a picked-up connection is ESTABLISHED after ESTABLISHED.
    let out = f.send(1, &seg(ACK, 9000, 7010, 500, 0, &[]));
    assert!(matches!(out.verdict, Verdict::Accept { .. }));
    let out = f.send(0, &seg(ACK, 7010, 9000, 500, 0, &[]));
    assert!(out.assure || f.assured);
}

#[test]
fn no_pickup_without_tcp_loose() {
    let s = Settings {
        tcp_loose: false,
        ..Default::default()
    };
    let mut f = Flow::with(s);
    let out = f.send(0, &seg(ACK, 7000, 9000, 500, 10, &[]));
    assert!(matches!(out.verdict, Verdict::Invalid(_)));
}

#[test]
fn out_of_window_data_is_invalid_unless_liberal() {
    let mut f = Flow::new();
    run(&mut f, &handshake());
    // Far beyond what the server's window allows.
    let bad = seg(PSH | ACK, 1001 + 50_000_000, 5001, 502, 10, &[]);
    assert!(matches!(f.send(0, &bad).verdict, Verdict::Invalid(r) if r.starts_with("SEQ is over")));
    let s = Settings {
        tcp_be_liberal: true,
        ..Default::default()
    };
    let mut f = Flow::with(s);
    run(&mut f, &handshake());
    assert!(matches!(f.send(0, &bad).verdict, Verdict::Accept { .. }));
}

#[test]
fn ack_of_unseen_data_is_invalid() {
    let mut f = Flow::new();
    run(&mut f, &handshake());
    let out = f.send(1, &seg(ACK, 5001, 1001 + 100_000, 509, 0, &[]));
    assert!(matches!(out.verdict, Verdict::Invalid(r) if r.starts_with("ACK is over")));
}

#[test]
fn syn_in_time_wait_reopens() {
    let mut f = Flow::new();
    let mut steps = handshake();
    steps.extend(close(1001));
    run(&mut f, &steps);
    let out = f.send(0, &seg(SYN, 90000, 0, 64240, 0, &OPTS));
    assert_eq!(out.verdict, Verdict::Repeat);
}

#[test]
fn syn_in_established_is_ignored() {
    let mut f = Flow::new();
    run(&mut f, &handshake());
    let out = f.send(0, &seg(SYN, 77777, 0, 64240, 0, &OPTS));
    assert_eq!(out.verdict, Verdict::AcceptNoRefresh);
    assert_eq!(f.conn.state, TcpState::Established);
}

#[test]
fn rst_in_established_closes_with_the_close_timeout() {
    let mut f = Flow::new();
    run(&mut f, &handshake());
    let out = f.send(1, &seg(RST | ACK, 5001, 1001, 0, 0, &[]));
    assert_eq!(out.verdict, accept(10));
    assert_eq!(f.conn.state, TcpState::Close);
}

#[test]
fn repeated_identical_acks_count_as_retransmissions() {
    let mut f = Flow::new();
    run(&mut f, &handshake());
    let data = seg(PSH | ACK, 1001, 5001, 502, 100, &[]);
    f.send(0, &data);
    let mut last = Verdict::AcceptNoRefresh;
    for _ in 0..3 {
        last = f.send(0, &data).verdict;
    }
    assert_eq!(f.conn.retrans, 3);
    assert_eq!(last, accept(300), "max_retrans caps the timeout");
}

#[test]
fn invalid_flag_combinations() {
    assert!(error(TcpFlags(SYN | FIN)).is_some());
    assert!(error(TcpFlags(0)).is_some());
    assert!(error(TcpFlags(FIN)).is_some());
    assert!(error(TcpFlags(SYN | ACK | PSH)).is_none());
    assert!(error(TcpFlags(ACK | TcpFlags::ECE | TcpFlags::CWR)).is_none());
}

#[test]
fn every_transition_row_matches_the_kernel_table() {
    // Spot checks of rows that the scenarios above do not reach.
    use TcpState::*;
    let t =
        |dir: usize, class: FlagClass, st: TcpState| TRANSITIONS[dir][class as usize][st as usize];
    assert_eq!(t(0, FlagClass::SynAck, SynSent2), SR);
    assert_eq!(t(1, FlagClass::Syn, TimeWait), SS);
    assert_eq!(t(1, FlagClass::Ack, SynSent), IG);
    assert_eq!(t(0, FlagClass::Ack, SynSent), IV);
    assert_eq!(t(0, FlagClass::Fin, SynSent), IV);
    assert_eq!(t(1, FlagClass::Rst, None), IV);
    assert!(TRANSITIONS
        .iter()
        .all(|d| d[FlagClass::None as usize].iter().all(|&x| x == IV)));
}
