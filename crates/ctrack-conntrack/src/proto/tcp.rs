//! The TCP tracker: the kernel's state table, window tracking and timeouts
//! (`nf_conntrack_proto_tcp.c`), decision for decision.

use super::Verdict;
use crate::settings::{Settings, TCP_RETRANS, TCP_UNACK};
use ctrack_packet::tcp::{seq_after, seq_before, TcpView};
use ctrack_packet::TcpFlags;

/// TCP connection states, numbered as `enum tcp_conntrack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// Initial.
    #[default]
    None = 0,
    /// SYN seen.
    SynSent = 1,
    /// SYN/ACK seen.
    SynRecv = 2,
    /// Handshake completed.
    Established = 3,
    /// FIN seen.
    FinWait = 4,
    /// ACK seen after FIN.
    CloseWait = 5,
    /// FIN seen in both directions.
    LastAck = 6,
    /// Last ACK seen.
    TimeWait = 7,
    /// Closed by RST.
    Close = 8,
    /// SYN seen from the reply direction: simultaneous open.
    SynSent2 = 9,
}

impl TcpState {
    /// The name `/proc/net/nf_conntrack` and `conntrack -L` print.
    pub fn name(self) -> &'static str {
        [
            "NONE",
            "SYN_SENT",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT",
            "CLOSE_WAIT",
            "LAST_ACK",
            "TIME_WAIT",
            "CLOSE",
            "SYN_SENT2",
        ][self as usize]
    }

    fn from_index(i: u8) -> TcpState {
        use TcpState::*;
        [
            None,
            SynSent,
            SynRecv,
            Established,
            FinWait,
            CloseWait,
            LastAck,
            TimeWait,
            Close,
            SynSent2,
        ][usize::from(i)]
    }
}

/// The flag class of a segment (`enum tcp_bit_set`), the table's middle index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlagClass {
    /// SYN without ACK.
    Syn = 0,
    /// SYN with ACK.
    SynAck = 1,
    /// FIN (and not SYN or RST).
    Fin = 2,
    /// ACK only.
    Ack = 3,
    /// RST.
    Rst = 4,
    /// None of the above.
    None = 5,
}

impl FlagClass {
    /// Classifies by RST, then SYN, FIN and ACK, as `get_conntrack_index` does.
    pub fn of(f: TcpFlags) -> FlagClass {
        if f.rst() {
            FlagClass::Rst
        } else if f.syn() {
            if f.ack() {
                FlagClass::SynAck
            } else {
                FlagClass::Syn
            }
        } else if f.fin() {
            FlagClass::Fin
        } else if f.ack() {
            FlagClass::Ack
        } else {
            FlagClass::None
        }
    }
}

/// `sIV`: the segment is invalid in this state.
const IV: u8 = 10;
/// `sIG`: ignore the segment, the firewall may be out of sync.
const IG: u8 = 11;

const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;

/// `tcp_conntracks[direction][flag class][old state]`: the kernel's transition table.
/// Columns: NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
/// TIME_WAIT, CLOSE, SYN_SENT2.
#[rustfmt::skip]
const TRANSITIONS: [[[u8; 10]; 6]; 2] = [
    // ORIGINAL
    [
        // SYN: new connection; retransmission; TIME_WAIT and CLOSE reopen; late SYN in S2.
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        // SYN/ACK from the client is invalid, except in simultaneous open.
        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        // FIN: close starts; both FINs give LAST_ACK.
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        // ACK: NONE->ESTABLISHED is loose pickup; SYN_RECV->ESTABLISHED ends the handshake.
        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        // RST closes anything that was opened.
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        // No flags at all.
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        // SYN: simultaneous open; TIME_WAIT reopened by the server in a new role.
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        // SYN/ACK: the standard open; retransmissions ignored.
        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        // FIN.
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        // ACK: in SYN_SENT it might be a half-open connection: ignored.
        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        // RST.
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        // No flags.
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// Per-direction flags (`IP_CT_TCP_FLAG_*`).
pub mod flag {
    /// Window scale option seen.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// SACK permitted seen.
    pub const SACK_PERM: u8 = 0x02;
    /// This side sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Window tracking is liberal (picked-up connection).
    pub const BE_LIBERAL: u8 = 0x08;
    /// This side has sent data not yet acknowledged.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// `td_maxack` holds a value.
    pub const MAXACK_SET: u8 = 0x20;
    /// A challenge ACK may follow (in `last_flags`).
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// Simultaneous open (in `last_flags`).
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// What one direction has sent (`struct ip_ct_tcp_state`).
///
/// Packed to two-byte alignment: 18 bytes instead of 20, so that a connection's TCP state
/// (two of these) is 56 bytes and the connection's hot part fits two cache lines. x86-64
/// reads and writes the 32-bit fields at any alignment at no cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct Seen {
    /// Highest sequence end sent.
    pub td_end: u32,
    /// Highest sequence end the receiver allows.
    pub td_maxend: u32,
    /// Largest window seen.
    pub td_maxwin: u32,
    /// Highest ACK sent.
    pub td_maxack: u32,
    /// Window scale shift.
    pub td_scale: u8,
    /// `flag::*` bits.
    pub flags: u8,
}

/// The TCP part of a connection (`struct ip_ct_tcp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    /// Original and reply direction.
    pub seen: [Seen; 2],
    /// Current state.
    pub state: TcpState,
    /// Direction of the last packet used for retransmission and ignore tracking.
    pub last_dir: u8,
    /// Retransmissions counted.
    pub retrans: u8,
    /// Flag class of the last packet.
    pub last_index: u8,
    /// Its sequence number.
    pub last_seq: u32,
    /// Its ACK.
    pub last_ack: u32,
    /// Its sequence end.
    pub last_end: u32,
    /// Its raw window.
    pub last_win: u16,
    /// Window scale of an ignored SYN.
    pub last_wscale: u8,
    /// Option flags of an ignored SYN, and `EXP_CHALLENGE_ACK`/`SIMULTANEOUS_OPEN`.
    pub last_flags: u8,
}

/// What the tracker decided, and what the core must do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The state changed: an `IPCT_PROTOINFO` event.
    pub state_changed: bool,
    /// The connection becomes ASSURED now.
    pub assure: bool,
    /// An INVALID FIN/RST on an assured connection shortens its timer to this.
    pub shrink_timeout: Option<u64>,
}

impl Outcome {
    fn verdict(v: Verdict) -> Outcome {
        Outcome {
            verdict: v,
            state_changed: false,
            assure: false,
            shrink_timeout: None,
        }
    }
}

/// Checks the kernel's `tcp_error` does before tracking (checksums are the core's):
/// header length and flag combinations. Returns the reason for INVALID.
pub fn error(flags: TcpFlags) -> Option<&'static str> {
    let f = flags.0 & !(TcpFlags::ECE | TcpFlags::CWR | TcpFlags::PSH);
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const URG: u8 = TcpFlags::URG;
    let valid = [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ];
    if valid.contains(&f) {
        None
    } else {
        Some("invalid tcp flag combination")
    }
}

/// `tcp_options`: window scale and SACK-permitted into `s`; untouched without options.
fn read_options(s: &mut Seen, seg: &TcpView<'_>) {
    if let Some(o) = seg.parse_options() {
        s.td_scale = 0;
        s.flags &= flag::BE_LIBERAL;
        if o.sack_perm {
            s.flags |= flag::SACK_PERM;
        }
        if o.window_scale {
            s.td_scale = o.scale;
            s.flags |= flag::WINDOW_SCALE;
        }
    }
}

/// Sets up a connection from its first packet (`tcp_new`). `Err` is INVALID.
pub fn new(conn: &mut TcpConn, seg: &TcpView<'_>, s: &Settings) -> Result<(), &'static str> {
    let class = FlagClass::of(seg.flags());
    let next = TRANSITIONS[0][class as usize][0];
    if next >= IV {
        return Err("invalid new");
    }
    *conn = TcpConn::default();
    let s0 = &mut conn.seen[0];
    s0.td_end = seg.end();
    s0.td_maxwin = u32::from(seg.window()).max(1);
    if next == SS {
        s0.td_maxend = s0.td_end;
        read_options(s0, seg);
    } else if !s.tcp_loose {
        return Err("connection pickup disabled (nf_conntrack_tcp_loose=0)");
    } else {
        s0.td_maxend = s0.td_end.wrapping_add(s0.td_maxwin);
        conn.seen[0].flags = flag::SACK_PERM | flag::BE_LIBERAL;
        conn.seen[1].flags = flag::SACK_PERM | flag::BE_LIBERAL;
    }
    conn.last_index = FlagClass::None as u8;
    Ok(())
}

/// The window check's three answers (`enum nf_ct_tcp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Accept,
    Ignore(&'static str),
    Invalid(&'static str),
}

fn init_sender(conn: &mut TcpConn, dir: usize, seg: &TcpView<'_>, end: u32, win: u32) {
    let sender = &mut conn.seen[dir];
    sender.td_end = end;
    sender.td_maxend = end;
    sender.td_maxwin = win.max(1);
    read_options(sender, seg);
    // RFC 1323: both sides must send the option for scaling to apply in either direction.
    let both = conn.seen[0].flags & conn.seen[1].flags & flag::WINDOW_SCALE != 0;
    if dir == 1 && !both {
        conn.seen[0].td_scale = 0;
        conn.seen[1].td_scale = 0;
    }
}

fn max_ack_window(sender: &Seen) -> u32 {
    sender.td_maxwin.max(66000)
}

/// `tcp_in_window`: sequence and acknowledgement bounds, window updates and retransmission
/// counting.
fn in_window(
    conn: &mut TcpConn,
    dir: usize,
    class: FlagClass,
    seg: &TcpView<'_>,
    s: &Settings,
    peer_seqadj: &crate::seqadj::SeqAdj,
) -> Window {
    let flags = seg.flags();
    let mut seq = seg.seq();
    let mut ack = seg.ack();
    let win_raw = seg.window();
    let mut win = u32::from(win_raw);
    let mut end = seg.end();
    let mut sack = if conn.seen[1 - dir].flags & flag::SACK_PERM != 0 {
        seg.highest_sack(ack)
    } else {
        ack
    };
    // The peer acknowledges in the numbers that left after a helper's rewrite: take the
    // receiver's correction back off.
    let receiver_offset = peer_seqadj.offset(ack.wrapping_sub(1)) as u32;
    ack = ack.wrapping_sub(receiver_offset);
    sack = sack.wrapping_sub(receiver_offset);

    if conn.seen[dir].td_maxwin == 0 {
        if flags.syn() {
            init_sender(conn, dir, seg, end, win);
            if !flags.ack() {
                return Window::Accept;
            }
        } else {
            // Picked up mid-stream: trust what the packet says.
            let scale = conn.seen[dir].td_scale;
            let swin = win << scale;
            let (sender, receiver) = pair(conn, dir);
            sender.td_end = end;
            sender.td_maxwin = swin.max(1);
            sender.td_maxend = end.wrapping_add(sender.td_maxwin);
            if receiver.td_maxwin == 0 {
                receiver.td_end = sack;
                receiver.td_maxend = sack;
            } else if sack == receiver.td_end.wrapping_add(1) {
                // Likely a reply to a keepalive.
                receiver.td_end = receiver.td_end.wrapping_add(1);
            }
        }
    } else if flags.syn()
        && seq_after(end, conn.seen[dir].td_end)
        && matches!(conn.state, TcpState::SynSent | TcpState::SynRecv)
    {
        // A reinitialised SYN or SYN/ACK with higher sequence numbers.
        init_sender(conn, dir, seg, end, win);
        if dir == 1 && !flags.ack() {
            return Window::Accept;
        }
    }

    let receiver_end = conn.seen[1 - dir].td_end;
    if !flags.ack() || (flags.has(TcpFlags::ACK | TcpFlags::RST) && ack == 0) {
        // No ACK, or a broken stack's RST with ACK 0: pretend it acknowledged everything.
        ack = receiver_end;
        sack = receiver_end;
    }
    if flags.rst() && seq == 0 && conn.state == TcpState::SynSent {
        // RST answering a SYN.
        seq = conn.seen[dir].td_end;
        end = seq;
    }

    let liberal = conn.seen[dir].flags & flag::BE_LIBERAL != 0 || s.tcp_be_liberal;
    let log = |w: Window| if liberal { Window::Accept } else { w };

    let sender = conn.seen[dir];
    let receiver = conn.seen[1 - dir];
    if !seq_before(seq, sender.td_maxend.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
        let ack_ok = seq_after(
            sack,
            receiver
                .td_end
                .wrapping_sub(max_ack_window(&sender))
                .wrapping_sub(1),
        );
        let in_recv_win = receiver.td_maxwin != 0
            && seq_after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if in_recv_win
            && ack_ok
            && overshot <= receiver.td_maxwin
            && seq_before(sack, receiver.td_end.wrapping_add(1))
        {
            // A stack that sends more than the receive window allows: remember the data
            // so its ACK is not over the upper bound later.
            conn.seen[dir].td_end = end;
            conn.seen[dir].flags |= flag::DATA_UNACKNOWLEDGED;
            return log(Window::Ignore("bytes more than expected"));
        }
        return log(Window::Invalid(
            "SEQ is over upper bound (over the window of the receiver)",
        ));
    }
    if !seq_before(sack, receiver.td_end.wrapping_add(1)) {
        return log(Window::Invalid(
            "ACK is over upper bound (ACKed data not seen yet)",
        ));
    }
    let in_recv_win = receiver.td_maxwin == 0
        || seq_after(
            end,
            sender
                .td_end
                .wrapping_sub(receiver.td_maxwin)
                .wrapping_sub(1),
        );
    if !in_recv_win {
        return log(Window::Ignore(
            "SEQ is under lower bound (already ACKed data retransmitted)",
        ));
    }
    if !seq_after(
        sack,
        receiver
            .td_end
            .wrapping_sub(max_ack_window(&sender))
            .wrapping_sub(1),
    ) {
        return log(Window::Ignore(
            "ignored ACK under lower bound (possible overly delayed)",
        ));
    }

    if !flags.syn() {
        win <<= sender.td_scale;
    }
    let (sender, receiver) = pair(conn, dir);
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if sender.td_maxwin < swin {
        sender.td_maxwin = swin;
    }
    if seq_after(end, sender.td_end) {
        sender.td_end = end;
        sender.flags |= flag::DATA_UNACKNOWLEDGED;
    }
    if flags.ack() {
        if sender.flags & flag::MAXACK_SET == 0 {
            sender.td_maxack = ack;
            sender.flags |= flag::MAXACK_SET;
        } else if seq_after(ack, sender.td_maxack) {
            sender.td_maxack = ack;
        }
    }
    if receiver.td_maxwin != 0 && seq_after(end, sender.td_maxend) {
        receiver.td_maxwin = receiver
            .td_maxwin
            .wrapping_add(end.wrapping_sub(sender.td_maxend));
    }
    if seq_after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
        receiver.td_maxend = sack.wrapping_add(win);
        if win == 0 {
            receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
        }
    }
    if ack == receiver.td_end {
        receiver.flags &= !flag::DATA_UNACKNOWLEDGED;
    }

    if class == FlagClass::Ack {
        let d = dir as u8;
        if conn.last_dir == d
            && conn.last_seq == seq
            && conn.last_ack == ack
            && conn.last_end == end
            && conn.last_win == win_raw
        {
            conn.retrans = conn.retrans.saturating_add(1);
        } else {
            conn.last_dir = d;
            conn.last_seq = seq;
            conn.last_ack = ack;
            conn.last_end = end;
            conn.last_win = win_raw;
            conn.retrans = 0;
        }
    }
    Window::Accept
}

fn pair(conn: &mut TcpConn, dir: usize) -> (&mut Seen, &mut Seen) {
    let [a, b] = &mut conn.seen;
    if dir == 0 {
        (a, b)
    } else {
        (b, a)
    }
}

fn can_early_drop_state(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::FinWait
            | TcpState::LastAck
            | TcpState::TimeWait
            | TcpState::Close
            | TcpState::CloseWait
    )
}

/// Whether early drop may evict a connection in this state (`tcp_can_early_drop`).
pub fn can_early_drop(conn: &TcpConn) -> bool {
    can_early_drop_state(conn.state)
}

/// What the connection's status says, as far as the tracker cares.
#[derive(Clone, Copy, Debug)]
pub struct ConnStatus {
    /// `IPS_SEEN_REPLY`.
    pub seen_reply: bool,
    /// `IPS_ASSURED`.
    pub assured: bool,
    /// `IPS_FIXED_TIMEOUT`.
    pub fixed_timeout: bool,
    /// Nanoseconds until the entry expires now.
    pub expires_in: u64,
    /// The other direction's sequence correction, after a NAT helper changed a payload's
    /// length there: its ACKs come in the numbers that left.
    pub peer_seqadj: crate::seqadj::SeqAdj,
}

/// `nf_conntrack_tcp_packet` for a connection that exists (or was just set up by [`new`]).
pub fn packet(
    conn: &mut TcpConn,
    dir: usize,
    seg: &TcpView<'_>,
    st: ConnStatus,
    s: &Settings,
) -> Outcome {
    let flags = seg.flags();
    let class = FlagClass::of(flags);
    let old = conn.state;
    let mut new_index = TRANSITIONS[dir][class as usize][old as usize];
    let mut old = old;
    let d = dir as u8;

    let mut skip_window = false;
    match new_index {
        SS if old >= TcpState::TimeWait => {
            // A SYN on a closed or aborted connection: destroy it and start again.
            if (conn.seen[dir].flags | conn.seen[1 - dir].flags) & flag::CLOSE_INIT != 0
                || (conn.last_dir == d && conn.last_index == FlagClass::Rst as u8)
            {
                return Outcome::verdict(Verdict::Repeat);
            }
            return ignore(conn, dir, class, seg, old);
        }
        IG => {
            if class == FlagClass::SynAck
                && conn.last_index == FlagClass::Syn as u8
                && conn.last_dir != d
                && seg.ack() == conn.last_end
            {
                // This SYN/ACK answers a SYN we ignored: client and server are in sync and
                // we were not. Take the values noted from that SYN.
                old = TcpState::SynSent;
                new_index = SR;
                let ld = usize::from(conn.last_dir);
                conn.seen[ld].td_end = conn.last_end;
                conn.seen[ld].td_maxend = conn.last_end;
                conn.seen[ld].td_maxwin = u32::from(conn.last_win).max(1);
                conn.seen[ld].td_scale = conn.last_wscale;
                conn.last_flags &= !flag::EXP_CHALLENGE_ACK;
                conn.seen[ld].flags = conn.last_flags;
                let r = &mut conn.seen[dir];
                r.td_end = 0;
                r.td_maxend = 0;
                r.td_maxwin = 0;
                r.td_maxack = 0;
                r.td_scale = 0;
                r.flags &= flag::BE_LIBERAL;
            } else {
                return ignore(conn, dir, class, seg, old);
            }
        }
        IV => return Outcome::verdict(Verdict::Invalid("invalid state transition")),
        TW if old == TcpState::LastAck
            && class == FlagClass::Ack
            && conn.last_dir != d
            && conn.last_index == FlagClass::Syn as u8
            && conn.last_flags & flag::EXP_CHALLENGE_ACK != 0 =>
        {
            // An RFC 5961 challenge ACK, not the ACK of the last FIN.
            conn.last_flags &= !flag::EXP_CHALLENGE_ACK;
            return Outcome::verdict(Verdict::AcceptNoRefresh);
        }
        S2 => conn.last_flags |= flag::SIMULTANEOUS_OPEN,
        SR if dir == 1
            && class == FlagClass::Ack
            && conn.last_flags & flag::SIMULTANEOUS_OPEN != 0 =>
        {
            new_index = ES;
        }
        CL if class == FlagClass::Rst => {
            if can_early_drop_state(conn.state) {
                skip_window = true;
            } else {
                let other = conn.seen[1 - dir];
                let established = conn.state == TcpState::Established && st.assured;
                // The kernel `break`s out of these checks in several places; `resync`
                // stays true only when it falls through to the RST-to-ignored cases.
                let mut resync = true;
                if other.flags & flag::MAXACK_SET != 0 && conn.last_index != FlagClass::Syn as u8 {
                    let seq = seg.seq();
                    if seq == 0 && !established {
                        resync = false;
                    } else if seq_before(seq, other.td_maxack) && !s.tcp_ignore_invalid_rst {
                        return Outcome::verdict(Verdict::Invalid("invalid rst"));
                    } else if !established || seq == other.td_maxack {
                        resync = false;
                    } else if conn.last_index == FlagClass::Ack as u8
                        && conn.last_dir == d
                        && seq == conn.last_end
                    {
                        // A RST at the end of a data train.
                        resync = false;
                    } else {
                        // Sequence does not match exactly: keep the state for a possible
                        // challenge ACK.
                        new_index = old as u8;
                    }
                }
                if resync {
                    if ((st.seen_reply
                        && conn.last_index == FlagClass::Syn as u8
                        && conn.last_dir != d)
                        || (!st.assured && conn.last_index == FlagClass::Ack as u8))
                        && seg.ack() == conn.last_end
                    {
                        // RST to a SYN or ACK we let through while out of sync.
                        skip_window = true;
                    } else if old == TcpState::SynSent
                        && conn.last_index == FlagClass::Ack as u8
                        && conn.last_dir == 1
                        && seg.seq() == conn.last_ack
                    {
                        // RST answering a challenge ACK we let through.
                        skip_window = true;
                    }
                }
            }
        }
        _ => {}
    }

    if !skip_window {
        match in_window(conn, dir, class, seg, s, &st.peer_seqadj) {
            Window::Accept => {}
            Window::Ignore(_) => return Outcome::verdict(Verdict::AcceptNoRefresh),
            Window::Invalid(reason) => {
                let shrink = handle_invalid(conn, dir, class, st, s);
                return Outcome {
                    verdict: Verdict::Invalid(reason),
                    state_changed: false,
                    assure: false,
                    shrink_timeout: shrink,
                };
            }
        }
    }

    let new = TcpState::from_index(new_index);
    conn.last_index = class as u8;
    conn.last_dir = d;
    conn.state = new;
    if old != new && new == TcpState::FinWait {
        conn.seen[dir].flags |= flag::CLOSE_INIT;
    }

    let t = |i: usize| s.tcp_timeout(i);
    let unacked = (conn.seen[0].flags | conn.seen[1].flags) & flag::DATA_UNACKNOWLEDGED != 0;
    let mut timeout =
        if u32::from(conn.retrans) >= s.tcp_max_retrans && t(new as usize) > t(TCP_RETRANS) {
            t(TCP_RETRANS)
        } else if class == FlagClass::Rst {
            t(TcpState::Close as usize)
        } else if unacked && t(new as usize) > t(TCP_UNACK) {
            t(TCP_UNACK)
        } else if conn.last_win == 0 && t(new as usize) > t(TCP_RETRANS) {
            t(TCP_RETRANS)
        } else {
            t(new as usize)
        };

    let mut out = Outcome {
        verdict: Verdict::Accept { timeout },
        state_changed: new != old,
        assure: false,
        shrink_timeout: None,
    };
    if !st.seen_reply {
        if flags.rst() {
            // The only answer was a RST: no connection was ever established.
            out.verdict = Verdict::Kill;
            return out;
        }
        if class == FlagClass::Syn && old == TcpState::SynSent {
            // A retransmitted SYN does not renew the timer.
            out.verdict = Verdict::AcceptNoRefresh;
            return out;
        }
        if new == TcpState::Established && timeout > t(TCP_UNACK) {
            // Picked up mid-stream: no long ESTABLISHED timeout before a reply.
            timeout = t(TCP_UNACK);
            out.verdict = Verdict::Accept { timeout };
        }
    } else if !st.assured
        && matches!(old, TcpState::SynRecv | TcpState::Established)
        && new == TcpState::Established
    {
        out.assure = true;
    }
    out
}

/// The ignore path (`TCP_CONNTRACK_IGNORE`): note the segment so a later answer can
/// resynchronise, and let it pass without touching the timer.
fn ignore(
    conn: &mut TcpConn,
    dir: usize,
    class: FlagClass,
    seg: &TcpView<'_>,
    old: TcpState,
) -> Outcome {
    conn.last_index = class as u8;
    conn.last_dir = dir as u8;
    conn.last_seq = seg.seq();
    conn.last_end = seg.end();
    conn.last_win = seg.window();
    if class == FlagClass::Syn && dir == 0 {
        conn.last_flags = 0;
        conn.last_wscale = 0;
        let mut seen = Seen::default();
        read_options(&mut seen, seg);
        if seen.flags & flag::WINDOW_SCALE != 0 {
            conn.last_flags |= flag::WINDOW_SCALE;
            conn.last_wscale = seen.td_scale;
        }
        if seen.flags & flag::SACK_PERM != 0 {
            conn.last_flags |= flag::SACK_PERM;
        }
        if old == TcpState::LastAck {
            conn.last_flags |= flag::EXP_CHALLENGE_ACK;
        }
    }
    if old == TcpState::SynSent && class == FlagClass::Ack && dir == 1 {
        // Possibly a challenge ACK answering the SYN.
        conn.last_ack = seg.ack();
    }
    Outcome::verdict(Verdict::AcceptNoRefresh)
}

/// `nf_tcp_handle_invalid`: an out-of-window FIN or RST answering one from the other side
/// shortens an assured connection's timer to the unacknowledged timeout.
fn handle_invalid(
    conn: &mut TcpConn,
    dir: usize,
    class: FlagClass,
    st: ConnStatus,
    s: &Settings,
) -> Option<u64> {
    if !st.assured || st.fixed_timeout || !matches!(class, FlagClass::Rst | FlagClass::Fin) {
        return None;
    }
    let d = dir as u8;
    if conn.last_dir != d
        && (conn.last_index == FlagClass::Fin as u8 || conn.last_index == FlagClass::Rst as u8)
    {
        let unack = s.tcp_timeout(TCP_UNACK);
        if st.expires_in < 120_000_000_000 || st.expires_in <= unack {
            return None;
        }
        Some(unack)
    } else {
        conn.last_index = class as u8;
        conn.last_dir = d;
        None
    }
}

#[cfg(test)]
mod tests;
