//! Explicit bounds on what a topology file may be, checked before and while it
//! is parsed, so that no input — malicious, generated wrong or just huge — can
//! make `dvr` run for minutes or fill memory before it says what is wrong.
//!
//! Why each bound exists:
//! - **size** ([`MAX_FILE_BYTES`]): everything after reading is linear in the
//!   input, so a size cap is a time and memory cap. The 1,000-host generated
//!   deployment (`dvr gen --hosts 1000`) is about 1.3 MB; the cap leaves room for
//!   ten times that.
//! - **nesting depth** ([`MAX_DEPTH`]): the YAML parser's cost grows with the
//!   square of flow nesting (`{a: {a: …` 100,000 deep took 66 s), so depth is
//!   checked by a linear scan of the text *before* the parser sees it. A
//!   topology file nests about six levels.
//! - **alias expansion** ([`MAX_EXPANDED_NODES`]): `&anchor`/`*alias` can make a
//!   small file expand exponentially ("billion laughs"); a file that uses
//!   aliases is first walked without building anything, counting the nodes
//!   that aliases expand to, and refused beyond the bound.
//! - **object counts** ([`MAX_HOSTS`], [`MAX_NETWORKS`], …): validation and
//!   allocation stay linear (or `n log n`) in these counts; the bounds keep a
//!   single `validate` well under a second and name the limit instead of
//!   grinding through, e.g., a million generated hosts.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// Largest topology file read, in bytes (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Deepest nesting of mappings and sequences (block or flow) in a file.
pub const MAX_DEPTH: usize = 64;
/// Most YAML nodes a file may expand to once its aliases are expanded.
pub const MAX_EXPANDED_NODES: u64 = 2_000_000;
/// Most hosts in one topology: 10,000 compute hosts (the scale target, e.g.
/// `dvr gen --hosts 10000`) plus their controllers and network nodes.
pub const MAX_HOSTS: usize = 10_100;
/// Most networks in one topology (each host can carry at most 4,094 of them,
/// one local VLAN each; that is checked separately).
pub const MAX_NETWORKS: usize = 10_000;
/// Most subnets, over all networks.
pub const MAX_SUBNETS: usize = 20_000;
/// Most subnets of one network (their CIDRs are checked pairwise for overlaps).
pub const MAX_SUBNETS_PER_NETWORK: usize = 256;
/// Most interfaces of one router: its `qrouter-` namespace on the network
/// node needs a local VLAN per attached network, and there are 4,094. (The
/// interfaces are checked pairwise for overlaps, so the bound also keeps that
/// check to a few million comparisons.)
pub const MAX_INTERFACES_PER_ROUTER: usize = 4094;
/// Most routers (each router host has 8,192 rfp/fpr link-local pairs).
pub const MAX_ROUTERS: usize = 8_192;
/// Most instances (one port each) in one topology.
pub const MAX_INSTANCES: usize = 200_000;
/// Most floating IPs.
pub const MAX_FLOATING_IPS: usize = 200_000;
/// Most external hosts.
pub const MAX_EXTERNAL_HOSTS: usize = 10_000;
/// Most security groups (declared; each project's `default` adds one).
pub const MAX_SECURITY_GROUPS: usize = 10_000;
/// Most security group rules, over all groups.
pub const MAX_SECURITY_GROUP_RULES: usize = 100_000;
/// Most bridge mappings (and NICs) of one host.
pub const MAX_MAPPINGS_PER_HOST: usize = 64;

/// A bound of this module that an input exceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which bound, e.g. `size` or `nesting depth`.
    pub limit: &'static str,
    /// `line:column:` where the text crossed it, when known.
    pub location: String,
    /// What the input has, and the bound.
    pub what: String,
    /// How to get under it.
    pub fix: String,
}

/// What [`scan`] learnt about the text besides its depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanInfo {
    /// Deepest nesting seen.
    pub depth: usize,
    /// Whether the text uses `*alias` references (then [`check_expansion`] runs).
    pub has_aliases: bool,
}

/// The size check, for a byte count read from the file system or a string.
pub fn check_size(bytes: u64) -> Result<(), LimitExceeded> {
    if bytes > MAX_FILE_BYTES {
        return Err(LimitExceeded {
            limit: "size",
            location: String::new(),
            what: format!(
                "the file is larger than {MAX_FILE_BYTES} bytes ({} MiB), the most a topology file may have",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            fix: "split the deployment into several topology files (the 1,000-host generated deployment is \
                  about 1.3 MB), or check that the right file was given"
                .to_string(),
        });
    }
    Ok(())
}

/// Flow and block nesting depth, and whether aliases occur, in one linear
/// pass over the text; fails at the first place deeper than [`MAX_DEPTH`]
/// without reading further. It is a lexical approximation of YAML (quotes,
/// comments, block scalars and flow brackets are understood) that never
/// under-counts flow nesting, the construct whose parsing cost is quadratic.
pub fn scan(yaml: &str) -> Result<ScanInfo, LimitExceeded> {
    let b = yaml.as_bytes();
    let mut info = ScanInfo::default();
    // Indentation columns of the open block collections.
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut line = 1usize;
    let mut line_start = 0usize;
    let mut i = 0usize;
    // Inside a block scalar (`|`/`>`): lines indented deeper than this are text.
    let mut scalar_indent: Option<usize> = None;
    // Indentation of the current line.
    let mut cur_indent = 0usize;
    let mut at_line_start = true;
    let too_deep = |line: usize, col: usize| LimitExceeded {
        limit: "nesting depth",
        location: format!("{line}:{col}:"),
        what: format!("mappings and sequences nest deeper than {MAX_DEPTH} levels here"),
        fix: "a topology file nests about six levels (hosts → host → bridge_mappings); close the brackets \
              that are left open or flatten the structure"
            .to_string(),
    };
    while i < b.len() {
        // At the start of a line outside flow context: indentation and `- ` markers.
        if std::mem::take(&mut at_line_start) && flow == 0 {
            let indent = b[i..].iter().take_while(|&&c| c == b' ').count();
            let rest = &b[i + indent..];
            let blank = rest.first().is_none_or(|&c| c == b'\n' || c == b'\r' || c == b'#');
            if let Some(si) = scalar_indent {
                if blank || indent > si {
                    i = skip_line(b, i);
                    continue;
                }
                scalar_indent = None;
            }
            if !blank {
                while block.last().is_some_and(|&c| c >= indent) {
                    block.pop();
                }
                block.push(indent);
                // Compact nested sequences: `- - - x` opens one level per dash.
                let mut col = indent;
                while b.get(i + col) == Some(&b'-') && matches!(b.get(i + col + 1), Some(b' ')) {
                    col += 2;
                    while b.get(i + col) == Some(&b' ') {
                        col += 1;
                    }
                    block.push(col);
                    if block.len() > MAX_DEPTH {
                        return Err(too_deep(line, col + 1));
                    }
                }
                if block.len() > MAX_DEPTH {
                    return Err(too_deep(line, indent + 1));
                }
                info.depth = info.depth.max(block.len());
            }
            cur_indent = indent;
            i += indent;
            continue;
        }
        let c = b[i];
        let prev = if i == line_start { b' ' } else { b[i - 1] };
        let token_start = matches!(prev, b' ' | b'\t' | b'[' | b'{' | b',' | b'\n');
        match c {
            b'\n' => {
                line += 1;
                i += 1;
                line_start = i;
                at_line_start = true;
                continue;
            }
            b'#' if token_start => {
                i = skip_line(b, i);
                continue;
            }
            b'\'' if token_start => {
                i = skip_quoted(b, i + 1, b'\'', &mut line, &mut line_start);
                continue;
            }
            b'"' if token_start => {
                i = skip_quoted(b, i + 1, b'"', &mut line, &mut line_start);
                continue;
            }
            b'[' | b'{' if token_start || flow > 0 => {
                flow += 1;
                let depth = block.len() + flow;
                if depth > MAX_DEPTH {
                    return Err(too_deep(line, i - line_start + 1));
                }
                info.depth = info.depth.max(depth);
            }
            b']' | b'}' if flow > 0 => flow -= 1,
            b'*' if token_start && b.get(i + 1).is_some_and(|&n| !matches!(n, b' ' | b'\t' | b'\n' | b'\r' | b',')) => {
                info.has_aliases = true;
            }
            b'|' | b'>' if token_start && flow == 0 => {
                // A block scalar header runs to the end of the line (modifiers, comment).
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                let header = std::str::from_utf8(&b[i + 1..end]).unwrap_or("");
                let header = header.split('#').next().unwrap_or("").trim();
                if header.chars().all(|c| matches!(c, '-' | '+' | '1'..='9')) {
                    scalar_indent = Some(cur_indent);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(info)
}

/// Index of the `\n` ending the line that contains `i` (or the end).
fn skip_line(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p)
}

/// Index just past the closing quote of a scalar whose body starts at `i`.
fn skip_quoted(b: &[u8], mut i: usize, quote: u8, line: &mut usize, line_start: &mut usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
            q if q == quote => return i + 1,
            b'\n' => {
                // Lines of a multi-line scalar are counted, but never read as block structure.
                *line += 1;
                *line_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The object-count bounds, checked on the parsed file before validation.
pub fn check_counts(spec: &crate::spec::TopologySpec) -> Result<(), LimitExceeded> {
    let subnets: usize = spec.networks.iter().map(|n| n.subnets.len()).sum();
    let counts = [
        ("hosts", spec.hosts.len(), MAX_HOSTS),
        ("networks", spec.networks.len(), MAX_NETWORKS),
        ("subnets", subnets, MAX_SUBNETS),
        ("routers", spec.routers.len(), MAX_ROUTERS),
        ("instances", spec.instances.len(), MAX_INSTANCES),
        ("floating_ips", spec.floating_ips.len(), MAX_FLOATING_IPS),
        ("external_hosts", spec.external_hosts.len(), MAX_EXTERNAL_HOSTS),
        ("security_groups", spec.security_groups.len(), MAX_SECURITY_GROUPS),
        ("security_group_rules", spec.security_groups.iter().map(|g| g.rules.as_ref().map_or(0, Vec::len)).sum(), MAX_SECURITY_GROUP_RULES),
    ];
    for (what, n, max) in counts {
        if n > max {
            return Err(count_error(what, format!("the file has {n} {what}; at most {max} are supported")));
        }
    }
    let interfaces: usize = spec.routers.iter().map(|r| r.interfaces.len()).sum();
    if interfaces > MAX_SUBNETS {
        return Err(count_error(
            "router interfaces",
            format!(
                "the routers have {interfaces} interfaces in all; a subnet is on one router at most, and at most {MAX_SUBNETS} subnets are supported"
            ),
        ));
    }
    for (i, n) in spec.networks.iter().enumerate() {
        if n.subnets.len() > MAX_SUBNETS_PER_NETWORK {
            return Err(count_error(
                "subnets per network",
                format!("networks[{i}] ({}) has {} subnets; at most {MAX_SUBNETS_PER_NETWORK} are supported", n.name, n.subnets.len()),
            ));
        }
    }
    for (i, r) in spec.routers.iter().enumerate() {
        if r.interfaces.len() > MAX_INTERFACES_PER_ROUTER {
            return Err(count_error(
                "router interfaces",
                format!(
                    "routers[{i}] ({}) has {} interfaces; at most {MAX_INTERFACES_PER_ROUTER} are supported",
                    r.name,
                    r.interfaces.len()
                ),
            ));
        }
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        let n = h.bridge_mappings.len().max(h.nics.len());
        if n > MAX_MAPPINGS_PER_HOST {
            return Err(count_error(
                "bridge_mappings",
                format!("hosts[{i}] ({}) has {n} bridge mappings or NICs; at most {MAX_MAPPINGS_PER_HOST} are supported", h.name),
            ));
        }
    }
    Ok(())
}

fn count_error(limit: &'static str, what: String) -> LimitExceeded {
    LimitExceeded {
        limit,
        location: String::new(),
        what,
        fix: "split the deployment into several topology files, or check the generator that wrote this one".to_string(),
    }
}

/// Walk the parsed YAML without building anything, counting nodes as aliases
/// expand them; refuse beyond [`MAX_EXPANDED_NODES`].
pub fn check_expansion(yaml: &str) -> Result<(), LimitExceeded> {
    let budget = Cell::new(MAX_EXPANDED_NODES);
    match (Count { budget: &budget }).deserialize(serde_yaml_ng::Deserializer::from_str(yaml)) {
        Ok(()) => Ok(()),
        Err(e) if budget.get() == 0 || e.to_string().contains("repetition limit") => Err(expansion_error()),
        // Any other error is the parser's, reported by the real parse with its context.
        Err(_) => Ok(()),
    }
}

/// The error for too many nodes through aliases.
pub fn expansion_error() -> LimitExceeded {
    LimitExceeded {
        limit: "alias expansion",
        location: String::new(),
        what: format!("with its aliases (`*name`) expanded, the file has more than {MAX_EXPANDED_NODES} YAML nodes"),
        fix: "write the repeated parts out, or use fewer and smaller anchors (`&name`); a topology file \
              needs no alias that expands to more than a few lines"
            .to_string(),
    }
}

/// A seed that visits every node and takes one unit of budget per node.
#[derive(Clone, Copy)]
struct Count<'a> {
    budget: &'a Cell<u64>,
}

impl Count<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get() {
            0 => Err(E::custom("alias expansion limit")),
            n => {
                self.budget.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! scalar_visits {
    ($($name:ident: $t:ty),* $(,)?) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<(), E> { self.take() })*
    };
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }
    scalar_visits!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128, visit_u128: u128,
        visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        self.take()?;
        let ((), v) = data.variant_seed(self)?;
        v.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_ordinary_yaml() {
        let y = "version: 1\nhosts:\n  - name: a\n    bridge_mappings: {physnet1: br-vlan}\n";
        let info = scan(y).unwrap();
        assert_eq!(info.depth, 4);
        assert!(!info.has_aliases);
    }

    #[test]
    fn quotes_comments_and_scalars_do_not_count() {
        let y = "name: '[[[[' # {{{{\nx: \"{{[[\\\"[[\"\ny: don't [stop\nz: |\n      a:\n         b:\n";
        let info = scan(y).unwrap();
        assert!(info.depth <= 2, "{info:?}");
    }

    #[test]
    fn flow_nesting_beyond_the_limit_fails_with_its_place() {
        let y = format!("version: 1\nname: {}", "{a: ".repeat(MAX_DEPTH + 5));
        let e = scan(&y).unwrap_err();
        assert_eq!(e.limit, "nesting depth");
        assert!(e.location.starts_with("2:"), "{e:?}");
        let ok = format!("name: {}x{}", "[".repeat(MAX_DEPTH - 2), "]".repeat(MAX_DEPTH - 2));
        assert_eq!(scan(&ok).unwrap().depth, MAX_DEPTH - 1);
    }

    #[test]
    fn block_nesting_beyond_the_limit_fails() {
        let deep: String = (0..MAX_DEPTH + 1).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(scan(&deep).unwrap_err().limit, "nesting depth");
        let dashes = format!("x:\n{}y\n", "- ".repeat(MAX_DEPTH + 1));
        assert_eq!(scan(&dashes).unwrap_err().limit, "nesting depth");
    }

    #[test]
    fn aliases_are_seen_and_billion_laughs_refused() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for k in 1..8 {
            y += &format!(
                "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                k,
                k,
                p = if k == 1 { "a".to_string() } else { (k - 1).to_string() }
            );
        }
        assert!(scan(&y).unwrap().has_aliases);
        assert_eq!(check_expansion(&y).unwrap_err().limit, "alias expansion");
        // Positive control: a modest alias passes.
        assert!(check_expansion("a: &a [x, y]\nb: *a\n").is_ok());
    }

    #[test]
    fn size_limit() {
        assert!(check_size(MAX_FILE_BYTES).is_ok());
        let e = check_size(MAX_FILE_BYTES + 1).unwrap_err();
        assert!(e.what.contains(&MAX_FILE_BYTES.to_string()), "{e:?}");
    }
}
