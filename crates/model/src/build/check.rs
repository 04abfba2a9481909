//! The problem collector and the helpers every object kind's check shares:
//! object labels as the file spells them, name rules, address arithmetic.

use crate::error::{Problem, ProblemKind};
use crate::spec::*;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Collects problems while walking the spec.
///
/// At most [`MAX_PROBLEMS`] are kept: a generated file with one mistake
/// repeated everywhere (or every subnet overlapping every other) must not turn
/// into millions of messages; the rest are counted in a closing line.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
    dropped: usize,
}

/// Problems reported in full; further ones are only counted.
pub const MAX_PROBLEMS: usize = 200;

impl Checker {
    pub(super) fn bad(&mut self, object: impl Into<String>, field: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.bad_k(ProblemKind::Other, object, field, what, fix);
    }

    /// Like [`Checker::bad`], for a problem of a kind that API front ends
    /// map to their own error types (e.g. an address already in use).
    /// A name that refers to no object of its kind: the one wording every
    /// section of the file uses for it ("no network is called `x`").
    pub(super) fn dangling(&mut self, object: &str, field: &str, kind: &str, name: &str, fix: &str) {
        self.bad_k(ProblemKind::DanglingReference, object, field, format!("no {kind} is called `{name}`"), fix);
    }

    pub(super) fn bad_k(
        &mut self,
        kind: ProblemKind,
        object: impl Into<String>,
        field: &str,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.dropped += 1;
            return;
        }
        self.problems.push(Problem { kind, object: object.into(), field: field.to_string(), what: what.into(), fix: fix.into() });
    }

    /// The problems, with a closing one counting those not kept.
    pub(super) fn finish(mut self) -> Vec<Problem> {
        if self.dropped > 0 {
            self.problems.push(Problem {
                kind: ProblemKind::Other,
                object: "topology".to_string(),
                field: String::new(),
                what: format!("{} more problem(s) not shown (only the first {MAX_PROBLEMS} are listed)", self.dropped),
                fix: "fix the problems above and validate again".to_string(),
            });
        }
        self.problems
    }
}

pub(super) fn obj(kind: &str, i: usize, name: &str) -> String {
    format!("{kind}[{i}] ({name})")
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
}

/// Name → index of its first holder, so a duplicate never hides the original.
pub(super) fn first_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut ix = HashMap::new();
    for (i, n) in names.enumerate() {
        ix.entry(n).or_insert(i);
    }
    ix
}

/// Where an object sits in the file (`hosts[3] (compute2)`), written out
/// only when a message names it: a 1,000-host file has 20,000 instances, and
/// formatting every label up front cost more than checking the names.
#[derive(Clone, Copy)]
pub(super) enum Label<'a> {
    /// `kind[i] (name)`, as [`obj`] writes it.
    Item { kind: &'a str, i: usize, name: &'a str },
    /// `networks[i] (net).subnets[k] (sub)`, as [`subnet_obj`] writes it.
    Subnet { spec: &'a TopologySpec, i: usize, k: usize },
}

impl Label<'_> {
    /// The label as messages show it.
    pub(super) fn text(&self) -> String {
        match *self {
            Label::Item { kind, i, name } => obj(kind, i, name),
            Label::Subnet { spec, i, k } => subnet_obj(spec, i, k),
        }
    }
}

/// Names must be valid and unique within one namespace. `items` are
/// `(object, name)` pairs; `fix` says what shares the namespace.
pub(super) fn check_unique<'a>(c: &mut Checker, items: impl Iterator<Item = (Label<'a>, &'a str)>, fix: &str) {
    let mut seen: HashMap<&str, Label<'a>> = HashMap::new();
    for (o, n) in items {
        if !valid_name(n) {
            c.bad(o.text(), "name", format!("`{n}` is not a valid name"), "use letters, digits, `-`, `_` or `.` only");
        }
        match seen.get(n) {
            Some(first) => {
                c.bad_k(ProblemKind::DuplicateName, o.text(), "name", format!("duplicate name: {} is also called `{n}`", first.text()), fix)
            }
            None => {
                seen.insert(n, o);
            }
        }
    }
}

pub(super) fn named<'a, T>(
    kind: &'a str,
    items: &'a [T],
    name: impl Fn(&T) -> &str + 'a,
) -> impl Iterator<Item = (Label<'a>, &'a str)> + 'a {
    items.iter().enumerate().map(move |(i, x)| {
        let n = name(x);
        (Label::Item { kind, i, name: n }, n)
    })
}

/// `networks[i] (net).subnets[k] (sub)`: where a subnet sits in the file.
pub(super) fn subnet_obj(spec: &TopologySpec, i: usize, k: usize) -> String {
    let n = &spec.networks[i];
    format!("networks[{i}] ({}).subnets[{k}] ({})", n.name, n.subnets[k].name)
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Controller => "controller",
        Role::Network => "network",
        Role::Compute => "compute",
    }
}

pub(super) fn first_host(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

pub(super) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
