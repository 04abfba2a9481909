//! Errors of loading a topology: every one names where (file, object, field),
//! what is wrong and how to fix it, because the reader is a person editing YAML.

use std::fmt;

/// What sort of rule a [`Problem`] breaks. Front ends that are not a person
/// editing YAML (the Neutron-compatible API server) map a problem to their
/// own error types by this kind, never by parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProblemKind {
    /// Any rule without a more specific kind (bad value, impossible placement…).
    #[default]
    Other,
    /// Two objects of one namespace share a name.
    DuplicateName,
    /// A name refers to an object that does not exist.
    DanglingReference,
    /// An IP address is already taken by another port, gateway or floating IP.
    IpInUse,
    /// A MAC address is already taken by another port or a host's DVR MAC.
    MacInUse,
    /// A VLAN id is already taken on its physical network.
    VlanInUse,
    /// No free address is left in a subnet.
    PoolExhausted,
    /// Subnets on one router overlap.
    OverlappingSubnets,
    /// A subnet is already attached to another router (its gateway IP is taken).
    SubnetAlreadyRouted,
    /// A fixed or floating address lies outside the subnets it must be in.
    AddressOutsideSubnet,
    /// A CIDR is malformed, has host bits set or is too small.
    InvalidCidr,
    /// No router connects an instance's subnet to the external network of its floating IP.
    NoRouterToExternal,
}

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which rule is broken, for programs; the text fields are for people.
    pub kind: ProblemKind,
    /// The object, e.g. `instances[2] (vm3)`.
    pub object: String,
    /// The field inside it, e.g. `ip`; empty when the whole object is at fault.
    pub field: String,
    /// What is wrong.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.what)?;
        } else {
            write!(f, "{}: field `{}`: {}", self.object, self.field, self.what)?;
        }
        write!(f, "\n    fix: {}", self.fix)
    }
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("{file}: cannot read the topology file: {source}\n    fix: check the path given to -t/--topology")]
    Io {
        /// File label.
        file: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not YAML, or YAML that does not fit the version-1 schema (unknown key, wrong type).
    #[error("{file}:{location} {message}\n    fix: {fix}")]
    Syntax {
        /// File label.
        file: String,
        /// `line:column:` when known.
        location: String,
        /// Parser message.
        message: String,
        /// Advice.
        fix: String,
    },
    /// Well-formed YAML describing an impossible or ambiguous deployment.
    #[error("{file}: {} problem(s) in the topology:\n{}", .problems.len(), render(.problems))]
    Invalid {
        /// File label.
        file: String,
        /// Every problem found (validation does not stop at the first).
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

impl TopologyError {
    /// The structured problems (empty for I/O and syntax errors).
    pub fn problem_list(&self) -> &[Problem] {
        match self {
            TopologyError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }

    /// The individual problems (one for I/O and syntax errors).
    pub fn problems(&self) -> Vec<String> {
        match self {
            TopologyError::Invalid { problems, .. } => problems.iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}
