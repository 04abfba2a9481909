//! Open vSwitch's connection tracker, as the `ct` action sees it: connections
//! per zone, committed by `ct(commit)`, found again in either direction, with
//! a mark (`ct_mark`) set by `ct(commit,exec(set_field:…->ct_mark))`.
//!
//! This is what makes Neutron's `openvswitch` firewall stateful: the first
//! packet of a connection is `+trk+new` and must be allowed by a rule (then
//! committed); later packets, and the replies, are `+trk+est` (`+rpl` for
//! replies) and pass on the "established" flows without any rule; a packet in
//! the reply direction of nothing committed is `+new` and meets the rules like
//! any other. Neutron marks connections a rule change revoked with
//! `ct_mark=1` and drops them.
//!
//! Time is a parameter (sans I/O): [`OvsConntrack::now`] is set by the
//! caller; entries expire after Open vSwitch's userspace default timeouts
//! (TCP established 24 h, other TCP 30 s, UDP and ICMP 30 s after their last
//! packet). Not modelled: TCP flags and window tracking (every TCP packet of
//! an unknown connection is taken as a SYN, so `+inv` arises only from
//! non-IP packets), ICMP errors (`+rel`), NAT (`ct(nat)` translates nothing:
//! the firewall never NATs), per-zone limits.

use crate::packet::{Frame, L4, Payload};
use dvr_openflow::ct_flags;
use rustc_hash::FxHashMap as FxMap;
use std::net::Ipv4Addr;

/// A connection's key in one direction: for ICMP echo, "ports" are the
/// type (8 request / 0 reply) and the identifier, so an unsolicited request in
/// the reverse direction is not mistaken for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (ICMP: type).
    pub sport: u16,
    /// Destination port (ICMP: identifier).
    pub dport: u16,
}

impl CtKey {
    /// The key of an IPv4 frame; `None` for ARP.
    pub fn of(f: &Frame) -> Option<CtKey> {
        let Payload::Ip { src, dst, l4 } = f.payload else { return None };
        let (sport, dport) = match l4 {
            L4::Icmp { reply, id } => (if reply { 0 } else { 8 }, id),
            L4::Tcp { sport, dport } | L4::Udp { sport, dport } => (sport, dport),
        };
        Some(CtKey { src, dst, proto: l4.proto(), sport, dport })
    }

    /// The key the answer carries.
    pub fn reply(&self) -> CtKey {
        if self.proto == 1 {
            let t = if self.sport == 8 { 0 } else { 8 };
            CtKey { src: self.dst, dst: self.src, sport: t, ..*self }
        } else {
            CtKey { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, ..*self }
        }
    }
}

/// One committed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtEntry {
    /// The key of its first packet.
    pub orig: CtKey,
    /// `ct_mark`.
    pub mark: u32,
    /// Whether a reply was seen (TCP then counts as established).
    pub replied: bool,
    /// When it expires (seconds of the caller's clock).
    pub expires: u64,
}

/// What the tracker says about one packet (the `ct_*` fields after a `ct`
/// action with `table=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtResult {
    /// `ct_state` bits ([`ct_flags`]).
    pub state: u8,
    /// `ct_mark` of the connection (0 if none).
    pub mark: u32,
}

/// The connections of one datapath, by zone.
#[derive(Debug, Clone, Default)]
pub struct OvsConntrack {
    conns: FxMap<(u16, CtKey), CtEntry>,
    /// The caller's clock, in seconds.
    pub now: u64,
    /// Scripted states instead of tracking, as `ofproto/trace --ct-next`
    /// gives them: each `ct(table=…)` takes the next one (then `+trk+new`,
    /// OVS's default), with `ct_mark` 0, and nothing is committed. For
    /// comparing the twin with a real switch's trace.
    pub script: Option<std::collections::VecDeque<u8>>,
}

/// OVS userspace default timeouts (seconds).
const TCP_ESTABLISHED: u64 = 24 * 3600;
const OTHER: u64 = 30;

impl OvsConntrack {
    /// Run `ct(zone=…)` on a frame: its state, then (with `commit`) the
    /// connection created or its mark updated (`set_mark`), then the
    /// entry's timeout refreshed. Non-IP frames are `+trk+inv` and never
    /// committed.
    pub fn execute(&mut self, zone: u16, f: &Frame, commit: bool, set_mark: Option<u32>) -> CtResult {
        use ct_flags::*;
        if let Some(script) = &mut self.script {
            return CtResult { state: script.pop_front().unwrap_or(TRK | NEW), mark: 0 };
        }
        let Some(key) = CtKey::of(f) else { return CtResult { state: TRK | INV, mark: 0 } };
        let now = self.now;
        let (slot, state) = if let Some(e) = self.live(zone, key) {
            ((zone, e.orig), TRK | EST)
        } else if let Some(e) = self.live(zone, key.reply()) {
            ((zone, e.orig), TRK | EST | RPL)
        } else {
            ((zone, key), TRK | NEW)
        };
        if state & NEW != 0 && !commit {
            return CtResult { state, mark: 0 };
        }
        let e = self.conns.entry(slot).or_insert(CtEntry { orig: key, mark: 0, replied: false, expires: 0 });
        if state & RPL != 0 {
            e.replied = true;
        }
        if commit && let Some(m) = set_mark {
            e.mark = m;
        }
        e.expires = now + if key.proto == 6 && e.replied { TCP_ESTABLISHED } else { OTHER };
        CtResult { state, mark: e.mark }
    }

    fn live(&self, zone: u16, key: CtKey) -> Option<&CtEntry> {
        self.conns.get(&(zone, key)).filter(|e| e.expires > self.now)
    }

    /// Committed connections still alive, as (zone, entry).
    pub fn entries(&self) -> impl Iterator<Item = (u16, &CtEntry)> {
        self.conns.iter().filter(|(_, e)| e.expires > self.now).map(|((z, _), e)| (*z, e))
    }

    /// Forget every connection (`ovs-appctl dpctl/flush-conntrack`).
    pub fn flush(&mut self) {
        self.conns.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_flags::*;
    use dvr_model::MacAddr;

    fn pkt(src: [u8; 4], dst: [u8; 4], l4: L4) -> Frame {
        Frame { src: MacAddr::ZERO, dst: MacAddr::ZERO, vlan: None, payload: Payload::Ip { src: src.into(), dst: dst.into(), l4 } }
    }

    #[test]
    fn new_then_established_then_reply_per_zone_and_expiry() {
        let mut ct = OvsConntrack::default();
        let syn = pkt([10, 0, 0, 1], [10, 0, 0, 2], L4::Tcp { sport: 40000, dport: 22 });
        let ack = pkt([10, 0, 0, 2], [10, 0, 0, 1], L4::Tcp { sport: 22, dport: 40000 });
        // Not committed: stays new.
        assert_eq!(ct.execute(1, &syn, false, None).state, TRK | NEW);
        assert_eq!(ct.execute(1, &ack, false, None).state, TRK | NEW, "the reply of nothing committed is new");
        assert_eq!(ct.execute(1, &syn, true, Some(0)).state, TRK | NEW);
        assert_eq!(ct.execute(1, &syn, false, None).state, TRK | EST);
        assert_eq!(ct.execute(1, &ack, false, None).state, TRK | EST | RPL);
        assert_eq!(ct.execute(2, &ack, false, None).state, TRK | NEW, "zones are separate");
        // A mark set on commit is seen by later packets.
        ct.execute(1, &syn, true, Some(1));
        assert_eq!(ct.execute(1, &ack, false, None), CtResult { state: TRK | EST | RPL, mark: 1 });
        // Established TCP lives a day; after that it is new again.
        ct.now += TCP_ESTABLISHED - 1;
        assert_eq!(ct.execute(1, &syn, false, None).state, TRK | EST);
        ct.now += TCP_ESTABLISHED + 1;
        assert_eq!(ct.execute(1, &syn, false, None).state, TRK | NEW);
    }

    #[test]
    fn icmp_request_in_reverse_is_not_a_reply_and_arp_is_invalid() {
        let mut ct = OvsConntrack::default();
        let req = pkt([10, 0, 0, 1], [10, 0, 0, 2], L4::Icmp { reply: false, id: 7 });
        let rep = pkt([10, 0, 0, 2], [10, 0, 0, 1], L4::Icmp { reply: true, id: 7 });
        let rev_req = pkt([10, 0, 0, 2], [10, 0, 0, 1], L4::Icmp { reply: false, id: 7 });
        ct.execute(0, &req, true, None);
        assert_eq!(ct.execute(0, &rep, false, None).state, TRK | EST | RPL);
        assert_eq!(ct.execute(0, &rev_req, false, None).state, TRK | NEW);
        // UDP expires 30 s after its last packet.
        let u = pkt([10, 0, 0, 1], [10, 0, 0, 2], L4::Udp { sport: 5000, dport: 53 });
        ct.execute(0, &u, true, None);
        ct.now += 31;
        assert_eq!(ct.execute(0, &u, false, None).state, TRK | NEW);
        let arp = Frame {
            src: MacAddr::ZERO,
            dst: MacAddr::BROADCAST,
            vlan: None,
            payload: Payload::Arp { op: 1, sha: MacAddr::ZERO, spa: [10, 0, 0, 1].into(), tha: MacAddr::ZERO, tpa: [10, 0, 0, 2].into() },
        };
        assert_eq!(ct.execute(0, &arp, true, None).state, TRK | INV);
        assert_eq!(ct.entries().count(), 0, "ICMP expired with the clock; ARP never committed");
    }
}
