//! The permanent neighbour entries of a namespace, held as blocks that can
//! be shared between hosts.
//!
//! A distributed router's `qrouter-` namespace lists, per interface, the
//! permanent ARP entry of every port of the interface's subnet
//! ([`crate::netns::subnet_arp`]). That list depends only on the subnet and
//! the qr- device, not on the host, yet it is repeated on every host with a
//! copy of the router: 1.7 million entries on 1,000 generated hosts, built,
//! page-faulted and freed one by one. [`Neighbours`] keeps such a list as one
//! shared block (`Arc<[Neighbour]>`) built once per plan, and the entries
//! that are the host's own (the fip link's, imported ones) in owned blocks.
//!
//! Seen from outside it is one ordered list: iteration, length, equality and
//! serialization are those of the flat list, so plans and their JSON are
//! unchanged. Blocks only matter to the planner: a delta skips blocks shared
//! by the old and new plan, and a booted port's entry is patched in by
//! swapping the subnet's block on every copy of the router.

use crate::model::Neighbour;
use serde::Serialize;
use std::sync::Arc;

/// Ordered permanent neighbour entries of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Neighbours {
    blocks: Vec<Block>,
}

/// A run of entries: shared between hosts, or owned by this namespace.
#[derive(Debug, Clone)]
enum Block {
    Shared(Arc<[Neighbour]>),
    Own(Vec<Neighbour>),
}

impl Block {
    fn as_slice(&self) -> &[Neighbour] {
        match self {
            Block::Shared(b) => b,
            Block::Own(v) => v,
        }
    }
}

impl Neighbours {
    /// No entries.
    pub fn new() -> Neighbours {
        Neighbours::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(|b| b.as_slice().len()).sum()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.blocks.iter().all(|b| b.as_slice().is_empty())
    }

    /// The entries in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { blocks: self.blocks.iter(), cur: [].iter() }
    }

    /// Append one entry of this namespace's own.
    pub fn push(&mut self, n: Neighbour) {
        match self.blocks.last_mut() {
            Some(Block::Own(v)) => v.push(n),
            _ => self.blocks.push(Block::Own(vec![n])),
        }
    }

    /// Append a block shared with other namespaces (kept as one block, so a
    /// later delta or patch can recognise it).
    pub fn push_shared(&mut self, block: Arc<[Neighbour]>) {
        if !block.is_empty() {
            self.blocks.push(Block::Shared(block));
        }
    }

    /// The blocks: each as its entries and, when shared, the pointer that
    /// identifies it (two namespaces holding the same pointer hold the same
    /// entries).
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (&[Neighbour], Option<*const Neighbour>)> + '_ {
        self.blocks.iter().map(|b| match b {
            Block::Shared(s) => (&s[..], Some(s.as_ptr())),
            Block::Own(v) => (&v[..], None),
        })
    }

    /// Insert `new` before the last `tail` entries, keeping its blocks.
    pub fn insert_before_tail(&mut self, tail: usize, new: Neighbours) {
        let at = self.split_before_tail(tail);
        self.blocks.splice(at..at, new.blocks);
    }

    /// Make the last `tail` entries start on a block boundary; returns that
    /// block's index. A block cut in two becomes two owned blocks.
    fn split_before_tail(&mut self, tail: usize) -> usize {
        let mut left = tail;
        let mut i = self.blocks.len();
        while left > 0 && i > 0 {
            let n = self.blocks[i - 1].as_slice().len();
            if n <= left {
                left -= n;
                i -= 1;
                continue;
            }
            let (front, back) = self.blocks[i - 1].as_slice().split_at(n - left);
            let (front, back) = (Block::Own(front.to_vec()), Block::Own(back.to_vec()));
            self.blocks[i - 1] = front;
            self.blocks.insert(i, back);
            return i;
        }
        i
    }

    /// Move the entries matching `f` out, keeping both lists in order. A
    /// block wholly matching moves as it is (still shared).
    pub fn take_where(&mut self, f: impl Fn(&Neighbour) -> bool) -> Neighbours {
        let mut out = Neighbours::new();
        let mut kept = Vec::with_capacity(self.blocks.len());
        for b in std::mem::take(&mut self.blocks) {
            let s = b.as_slice();
            let hits = s.iter().filter(|n| f(n)).count();
            if hits == 0 {
                kept.push(b);
            } else if hits == s.len() {
                out.blocks.push(b);
            } else {
                let (gone, stay): (Vec<Neighbour>, Vec<Neighbour>) = s.iter().cloned().partition(|n| f(n));
                out.extend(gone);
                kept.push(Block::Own(stay));
            }
        }
        self.blocks = kept;
        out
    }

    /// Replace the run of entries on device `dev` with `block`, when the run
    /// is exactly one block (as [`crate::netns::qrouter_dvr`] lays out an
    /// interface's ARP entries). Returns the run replaced; `None` (and
    /// nothing changed) when no block starts with `dev`, or the run spills
    /// into the blocks around it. Blocks are found by their first entry:
    /// a router's copy on each of hundreds of hosts is patched, and looking
    /// at every entry of each was a tenth of a booted instance's replan.
    pub fn replace_run(&mut self, dev: &str, block: Arc<[Neighbour]>) -> Option<Neighbours> {
        let starts = |b: &Block| b.as_slice().first().is_some_and(|n| n.dev == dev);
        let i = self.blocks.iter().position(starts)?;
        let whole = self.blocks[i].as_slice().iter().all(|n| n.dev == dev);
        let before = i.checked_sub(1).and_then(|j| self.blocks[j].as_slice().last()).is_some_and(|n| n.dev == dev);
        let after = self.blocks.get(i + 1).is_some_and(starts);
        if !whole || before || after || block.is_empty() {
            return None;
        }
        Some(Neighbours { blocks: vec![std::mem::replace(&mut self.blocks[i], Block::Shared(block))] })
    }
}

/// The entries of a [`Neighbours`] in order.
pub struct Iter<'a> {
    blocks: std::slice::Iter<'a, Block>,
    cur: std::slice::Iter<'a, Neighbour>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Neighbour;
    fn next(&mut self) -> Option<&'a Neighbour> {
        loop {
            if let Some(n) = self.cur.next() {
                return Some(n);
            }
            self.cur = self.blocks.next()?.as_slice().iter();
        }
    }
}

impl PartialEq for Neighbours {
    fn eq(&self, other: &Neighbours) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Neighbours {}

impl Serialize for Neighbours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl From<Vec<Neighbour>> for Neighbours {
    fn from(v: Vec<Neighbour>) -> Neighbours {
        Neighbours { blocks: if v.is_empty() { vec![] } else { vec![Block::Own(v)] } }
    }
}

impl FromIterator<Neighbour> for Neighbours {
    fn from_iter<I: IntoIterator<Item = Neighbour>>(it: I) -> Neighbours {
        Neighbours::from(it.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<Neighbour> for Neighbours {
    fn extend<I: IntoIterator<Item = Neighbour>>(&mut self, it: I) {
        for n in it {
            self.push(n);
        }
    }
}

impl<'a> IntoIterator for &'a Neighbours {
    type Item = &'a Neighbour;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8, dev: &str) -> Neighbour {
        Neighbour {
            ip: std::net::Ipv4Addr::new(10, 0, 0, i),
            mac: dvr_model::MacAddr::from_prefix([0xfa, 0x16, 0x3e], u32::from(i)),
            dev: dev.into(),
            origin: Default::default(),
        }
    }

    fn block(ids: std::ops::Range<u8>, dev: &str) -> Arc<[Neighbour]> {
        ids.map(|i| n(i, dev)).collect::<Vec<_>>().into()
    }

    /// Two shared blocks (qr-a, qr-b) and an owned entry (rfp), as a
    /// distributed router's copy with a fip link lays them out.
    fn sample() -> (Neighbours, Vec<Neighbour>) {
        let mut ns = Neighbours::new();
        ns.push_shared(block(1..4, "qr-a"));
        ns.push_shared(block(4..6, "qr-b"));
        ns.push_shared(block(0..0, "qr-empty"));
        ns.push(n(99, "rfp"));
        let flat: Vec<Neighbour> = (1..6).map(|i| n(i, if i < 4 { "qr-a" } else { "qr-b" })).chain([n(99, "rfp")]).collect();
        (ns, flat)
    }

    #[test]
    fn reads_and_serializes_as_the_flat_list() {
        let (ns, flat) = sample();
        assert_eq!(ns.len(), 6);
        assert!(!ns.is_empty() && Neighbours::new().is_empty());
        assert!(ns.iter().eq(flat.iter()));
        assert_eq!(serde_json::to_string(&ns).unwrap(), serde_json::to_string(&flat).unwrap());
        assert_eq!(ns, Neighbours::from(flat.clone()));
        // Equality is of the entries, whatever the blocks.
        assert_ne!(ns, Neighbours::from(flat[..5].to_vec()));
        assert_eq!(ns.blocks().count(), 3, "the empty shared block is not kept");
    }

    #[test]
    fn insert_before_tail_keeps_order_and_shared_blocks() {
        for tail in 0..=6 {
            let (mut ns, mut flat) = sample();
            let mut new = Neighbours::new();
            let b = block(50..52, "qr-new");
            new.push_shared(b.clone());
            ns.insert_before_tail(tail, new);
            let at = flat.len() - tail;
            flat.splice(at..at, b.iter().cloned());
            assert!(ns.iter().eq(flat.iter()), "tail {tail}");
            assert!(ns.blocks().any(|(_, p)| p == Some(b.as_ptr())), "tail {tail}: the new block stays shared");
        }
    }

    #[test]
    fn take_where_moves_whole_blocks_and_splits_mixed_ones() {
        let (mut ns, flat) = sample();
        let a_ptr = ns.blocks().next().unwrap().1;
        let gone = ns.take_where(|x| x.dev == "qr-a");
        assert!(gone.iter().eq(flat.iter().filter(|x| x.dev == "qr-a")));
        assert!(ns.iter().eq(flat.iter().filter(|x| x.dev != "qr-a")));
        assert_eq!(gone.blocks().next().unwrap().1, a_ptr, "a whole block moves still shared");
        // A predicate cutting a block: both sides keep their order.
        let (mut ns, flat) = sample();
        let odd = |x: &Neighbour| x.ip.octets()[3] % 2 == 1;
        let gone = ns.take_where(odd);
        assert!(gone.iter().eq(flat.iter().filter(|x| odd(x))));
        assert!(ns.iter().eq(flat.iter().filter(|x| !odd(x))));
    }

    #[test]
    fn replace_run_swaps_exactly_one_block() {
        let (mut ns, flat) = sample();
        let fresh = block(4..8, "qr-b");
        let old = ns.replace_run("qr-b", fresh.clone()).expect("qr-b is one block");
        assert!(old.iter().eq(flat.iter().filter(|x| x.dev == "qr-b")));
        let want: Vec<Neighbour> =
            flat.iter().filter(|x| x.dev == "qr-a").cloned().chain(fresh.iter().cloned()).chain([n(99, "rfp")]).collect();
        assert!(ns.iter().eq(want.iter()));
        // Refused, and nothing touched: a device with no entry, a run
        // spilling into the next block or the one before, an empty replacement.
        assert!(ns.replace_run("qr-none", block(1..2, "qr-none")).is_none());
        ns.insert_before_tail(1, Neighbours::from(vec![n(9, "qr-b")]));
        let held: Vec<Neighbour> = ns.iter().cloned().collect();
        assert!(ns.replace_run("qr-b", block(1..3, "qr-b")).is_none());
        let mut spill = Neighbours::from(vec![n(8, "qr-a")]);
        spill.push_shared(block(1..4, "qr-a"));
        assert!(spill.replace_run("qr-a", block(1..3, "qr-a")).is_none());
        assert!(ns.replace_run("qr-a", block(0..0, "qr-a")).is_none());
        assert!(ns.iter().eq(held.iter()));
        assert_eq!(held.len(), flat.len() - 2 + fresh.len() + 1);
        let mut spill = Neighbours::from(vec![n(5, "rfp"), n(8, "qr-a")]);
        spill.push_shared(block(1..4, "qr-a"));
        assert!(spill.replace_run("qr-a", block(1..3, "qr-a")).is_none());
    }
}
