//! Netfilter NAT with connection tracking, as the kernel applies it: the nat
//! chains of a hook are walked only for the first packet of a connection;
//! that decision (a binding) is stored in the conntrack entry and applied to
//! every later packet in both directions — destination rewrites at
//! PREROUTING/OUTPUT, source rewrites at POSTROUTING/INPUT — which is how
//! replies are translated back without any rule of their own.

use dvr_plan::{IptMatch, IptRule, IptTable, IptTarget};
use std::net::Ipv4Addr;

/// Netfilter hooks with nat chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before routing, for received packets (destination NAT).
    Prerouting,
    /// Local delivery (source NAT of replies).
    Input,
    /// Locally generated packets (destination NAT).
    Output,
    /// After routing (source NAT).
    Postrouting,
}

impl Hook {
    /// Built-in chain name.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
    fn rewrites_destination(self) -> bool {
        matches!(self, Hook::Prerouting | Hook::Output)
    }
}

/// The connection identity of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (ICMP: echo id).
    pub sport: u16,
    /// Destination port (ICMP: echo id).
    pub dport: u16,
}

impl Tuple {
    /// The tuple of the answer.
    pub fn reversed(&self) -> Tuple {
        Tuple { src: self.dst, dst: self.src, proto: self.proto, sport: self.dport, dport: self.sport }
    }
}

/// One tracked connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// As first seen.
    pub orig: Tuple,
    /// What a reply looks like (after NAT).
    pub reply: Tuple,
    /// Destination NAT applied (`--ctstate DNAT`).
    pub dnat: bool,
    /// Source NAT applied (`--ctstate SNAT`).
    pub snat: bool,
    dst_decided: bool,
    src_decided: bool,
}

/// Direction of a packet relative to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Same direction as the first packet.
    Original,
    /// The answer direction.
    Reply,
}

/// The conntrack table of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Conntrack {
    /// Connections in creation order.
    pub conns: Vec<Conn>,
    /// Both tuples of every connection → (connection, direction), like the
    /// kernel's hash of tuples.
    by_tuple: rustc_hash::FxHashMap<Tuple, (usize, Dir)>,
}

/// Interfaces and mark a rule sees.
#[derive(Debug, Clone, Copy)]
pub struct RuleCtx<'a> {
    /// Incoming device (PREROUTING, INPUT).
    pub in_dev: Option<&'a str>,
    /// Outgoing device (OUTPUT, POSTROUTING).
    pub out_dev: Option<&'a str>,
    /// Packet mark, as the mangle table set it (see [`mangle`]).
    pub mark: u32,
}

/// What travels with a packet through one namespace's hooks, like the
/// kernel's `skb->_nfct` and `skb->mark`: the conntrack entry found (or made)
/// at the first hook, so later hooks of the same traversal do not look the
/// already-translated packet up again, and the mark the mangle table set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skb {
    /// The connection and this packet's direction in it, once known.
    pub ct: Option<(usize, Dir)>,
    /// `skb->mark`.
    pub mark: u32,
}

/// Walk a mangle chain for one packet: `MARK --set-xmark value/mask` rules
/// rewrite `mark` (`mark = (mark & !mask) ^ value`) and go on, as MARK does
/// not terminate; jumps are followed. Returns the new mark and the rules that
/// set it (as `-A CHAIN args`), for the trace.
pub fn mangle(table: &IptTable, chain: &str, t: &Tuple, cx: &RuleCtx, mark: u32) -> (u32, Vec<String>) {
    fn go(table: &IptTable, chain: &str, t: &Tuple, cx: &RuleCtx, mark: &mut u32, hits: &mut Vec<String>, depth: u32) {
        let Some(c) = table.chain(chain) else { return };
        if depth > 32 {
            return;
        }
        let conn = Conn { orig: *t, reply: t.reversed(), dnat: false, snat: false, dst_decided: false, src_decided: false };
        for r in &c.rules {
            let cx = RuleCtx { mark: *mark, ..*cx };
            if !rule_matches(r, t, &conn, &cx) {
                continue;
            }
            match &r.target {
                IptTarget::Jump { chain } => go(table, chain, t, &cx, mark, hits, depth + 1),
                IptTarget::Mark { value, mask } => {
                    *mark = (*mark & !mask) ^ value;
                    hits.push(format!("-A {} {}", c.name, dvr_plan::render::ipt_rule_args(r)));
                }
                IptTarget::Accept => return,
                _ => {}
            }
        }
    }
    let mut m = mark;
    let mut hits = vec![];
    go(table, chain, t, cx, &mut m, &mut hits, 0);
    (m, hits)
}

/// What NAT did to one packet at one hook, for the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatStep {
    /// The chain was walked; a rule decided (its text) or none did.
    Chain {
        /// Hook.
        hook: Hook,
        /// The deciding rule as `-A CHAIN args`, or `None` when no rule decided.
        rule: Option<String>,
        /// Rewrite done ("SNAT 192.168.1.10 → 10.100.0.2"), if any.
        rewrite: Option<String>,
    },
    /// A later packet of a known connection was rewritten by conntrack.
    Conntrack {
        /// Hook.
        hook: Hook,
        /// What changed.
        rewrite: CtRewrite,
    },
}

/// What conntrack rewrote in a later packet of a known connection, typed:
/// every such packet has one, so its sentence is written only when printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtRewrite {
    /// The packet is the reply direction of the connection.
    pub reply: bool,
    /// The source was rewritten (else the destination).
    pub source: bool,
    /// The address before.
    pub from: Ipv4Addr,
    /// The address after.
    pub to: Ipv4Addr,
}

impl std::fmt::Display for CtRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.reply { "reply of a tracked connection" } else { "tracked connection" };
        let which = if self.source { "source" } else { "destination" };
        write!(f, "{kind}: {which} {} → {}", self.from, self.to)
    }
}

/// As its sentence (the trace contract's `rewrite` string).
impl serde::Serialize for CtRewrite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

enum Verdict {
    Continue,
    Accept(String),
    Dnat(Ipv4Addr, String),
    Snat(Ipv4Addr, String),
    Redirect(u16, String),
}

fn dev_matches(pattern: &str, dev: Option<&str>) -> bool {
    let Some(dev) = dev else { return false };
    match pattern.strip_suffix('+') {
        Some(prefix) => dev.starts_with(prefix),
        None => dev == pattern,
    }
}

fn rule_matches(r: &IptRule, t: &Tuple, conn: &Conn, cx: &RuleCtx) -> bool {
    r.matches.iter().all(|m| match m {
        IptMatch::Src { net } => net.contains(&t.src),
        IptMatch::Dst { net } => net.contains(&t.dst),
        IptMatch::InIface { dev, not } => dev_matches(dev, cx.in_dev) != *not,
        IptMatch::OutIface { dev, not } => dev_matches(dev, cx.out_dev) != *not,
        IptMatch::TcpDport { port } => t.proto == 6 && t.dport == *port,
        IptMatch::CtStateDnat { not } => conn.dnat != *not,
        IptMatch::Mark { value, mask, not } => ((cx.mark & mask) == *value) != *not,
    })
}

fn walk(table: &IptTable, chain: &str, t: &Tuple, conn: &Conn, cx: &RuleCtx, depth: u32) -> Verdict {
    let Some(c) = table.chain(chain) else {
        return Verdict::Continue;
    };
    if depth > 32 {
        return Verdict::Continue;
    }
    for r in &c.rules {
        if !rule_matches(r, t, conn, cx) {
            continue;
        }
        let text = format!("-A {} {}", c.name, dvr_plan::render::ipt_rule_args(r));
        match &r.target {
            IptTarget::Jump { chain } => match walk(table, chain, t, conn, cx, depth + 1) {
                Verdict::Continue => {}
                v => return v,
            },
            IptTarget::Accept => return Verdict::Accept(text),
            IptTarget::Dnat { to } => return Verdict::Dnat(*to, text),
            IptTarget::Snat { to, .. } => return Verdict::Snat(*to, text),
            IptTarget::Redirect { port } => return Verdict::Redirect(*port, text),
            IptTarget::NoTrack | IptTarget::Mark { .. } => {}
        }
    }
    Verdict::Continue
}

impl Conntrack {
    /// Find the connection of a packet and the packet's direction.
    pub fn lookup(&self, t: &Tuple) -> Option<(usize, Dir)> {
        self.by_tuple.get(t).copied()
    }

    /// Run NAT for a packet at `hook`: create the connection if new, walk the
    /// nat chain once per connection and hook kind, apply the binding.
    /// `local_addr` is the incoming device's address (for REDIRECT).
    ///
    /// `attached` is the entry the packet already carries from an earlier
    /// hook of the same traversal. The kernel looks a packet up once, at
    /// PREROUTING or OUTPUT, and keeps the entry with it: by POSTROUTING the
    /// packet may have been DNATed, and looking *that* tuple up would find
    /// nothing and start a second connection that knows nothing of the DNAT
    /// (so `! --ctstate DNAT` would wrongly match and hairpin SNAT never
    /// happen). The entry used is stored back into `attached`.
    pub fn process(
        &mut self,
        nat: Option<&IptTable>,
        hook: Hook,
        t: &mut Tuple,
        cx: &RuleCtx,
        local_addr: Option<Ipv4Addr>,
        attached: &mut Option<(usize, Dir)>,
    ) -> Vec<NatStep> {
        let mut steps = Vec::new();
        let (i, dir) = match attached.or_else(|| self.lookup(t)) {
            Some(found) => found,
            None => {
                self.conns.push(Conn { orig: *t, reply: t.reversed(), dnat: false, snat: false, dst_decided: false, src_decided: false });
                let i = self.conns.len() - 1;
                self.by_tuple.insert(*t, (i, Dir::Original));
                self.by_tuple.entry(t.reversed()).or_insert((i, Dir::Reply));
                (i, Dir::Original)
            }
        };
        *attached = Some((i, dir));
        let dst_hook = hook.rewrites_destination();
        let decided = if dst_hook { self.conns[i].dst_decided } else { self.conns[i].src_decided };
        if dir == Dir::Original && !decided {
            let conn = self.conns[i].clone();
            let verdict = match nat {
                Some(table) => walk(table, hook.chain(), t, &conn, cx, 0),
                None => Verdict::Continue,
            };
            let old_reply = self.conns[i].reply;
            let c = &mut self.conns[i];
            if dst_hook {
                c.dst_decided = true;
            } else {
                c.src_decided = true;
            }
            let (rule, rewrite) = match verdict {
                Verdict::Continue => (None, None),
                Verdict::Accept(r) => (Some(r), None),
                Verdict::Dnat(to, r) => {
                    let s = format!("DNAT {} → {to}", t.dst);
                    c.dnat = true;
                    c.reply.src = to;
                    (Some(r), Some(s))
                }
                Verdict::Redirect(port, r) => {
                    let to = local_addr.unwrap_or(t.dst);
                    let s = format!("REDIRECT {}:{} → {to}:{port}", t.dst, t.dport);
                    c.dnat = true;
                    c.reply.src = to;
                    c.reply.sport = port;
                    (Some(r), Some(s))
                }
                Verdict::Snat(to, r) => {
                    let s = format!("SNAT {} → {to}", t.src);
                    c.snat = true;
                    c.reply.dst = to;
                    (Some(r), Some(s))
                }
            };
            let new_reply = self.conns[i].reply;
            if new_reply != old_reply {
                if self.by_tuple.get(&old_reply) == Some(&(i, Dir::Reply)) {
                    self.by_tuple.remove(&old_reply);
                }
                self.by_tuple.insert(new_reply, (i, Dir::Reply));
            }
            if nat.is_some() {
                steps.push(NatStep::Chain { hook, rule, rewrite });
            }
        }
        // Apply the connection's binding to this packet.
        let c = &self.conns[i];
        let before = *t;
        match (dst_hook, dir) {
            (true, Dir::Original) if c.dnat => {
                t.dst = c.reply.src;
                t.dport = c.reply.sport;
            }
            (true, Dir::Reply) if c.snat => {
                t.dst = c.orig.src;
                t.dport = c.orig.sport;
            }
            (false, Dir::Original) if c.snat => {
                t.src = c.reply.dst;
                t.sport = c.reply.dport;
            }
            (false, Dir::Reply) if c.dnat => {
                t.src = c.orig.dst;
                t.sport = c.orig.dport;
            }
            _ => {}
        }
        let first_packet_rewrite = matches!(steps.last(), Some(NatStep::Chain { rewrite: Some(_), .. }));
        if *t != before && !first_packet_rewrite {
            let source = t.src != before.src;
            let (from, to) = if source { (before.src, t.src) } else { (before.dst, t.dst) };
            steps.push(NatStep::Conntrack { hook, rewrite: CtRewrite { reply: dir == Dir::Reply, source, from, to } });
        }
        steps
    }
}
