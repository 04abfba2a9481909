//! # dvr-model: the deployment as data
//!
//! The first layer of the workspace. It reads a topology file (version 1,
//! `docs/topology.md`), checks it, and allocates everything the file leaves
//! out — UUIDs, MACs, DVR MACs, fixed IPs, local VLANs, link-local pairs —
//! deterministically, so that every later layer (plan, sim, realize) works
//! from one immutable, valid [`Topology`] and never has to fail.
//!
//! Modules: [`types`] (domain values), [`spec`] (the YAML as written),
//! [`build`] (validation + allocation), [`limits`] (bounds on the input), [`alloc`] (the allocators),
//! [`names`] (Neutron's device and namespace names), [`security`] (security groups), [`topology`] (the result).
#![forbid(unsafe_code)]

pub mod alloc;
pub mod build;
pub mod change;
pub mod error;
pub mod r#gen;
pub mod limits;
pub mod live;
pub mod names;
pub mod security;
pub mod spec;
pub mod summary;
pub mod text;
pub mod topology;
pub mod types;

pub use build::{build, load_file, load_str, parse_spec};
pub use error::{Problem, ProblemKind, TopologyError};
pub use spec::{Expected, PathProto, PathSpec, Role};
pub use topology::*;
pub use types::*;

/// The built-in seed lab: the deployment of the DVR walkthrough.
pub const SEED_YAML: &str = include_str!("../../../labs/seed.yaml");

/// The seed lab with security groups (`labs/seed-secure.yaml`): Neutron's
/// `openvswitch` firewall driver on every host.
pub const SEED_SECURE_YAML: &str = include_str!("../../../labs/seed-secure.yaml");

/// The seed lab with VXLAN tenant networks (`labs/seed-vxlan.yaml`): test1
/// and test2 in tunnels with VNIs 1001 and 1002, endpoints from the default underlay.
pub const SEED_VXLAN_YAML: &str = include_str!("../../../labs/seed-vxlan.yaml");

/// The seed lab with a VLAN (test1) and a VXLAN (test2) network on one router
/// (`labs/seed-mixed.yaml`).
pub const SEED_MIXED_YAML: &str = include_str!("../../../labs/seed-mixed.yaml");

/// A commented starting file (`dvr topology --example`): a small deployment
/// that uses every kind of object and lists its demo paths.
pub const EXAMPLE_YAML: &str = include_str!("../../../labs/example.yaml");

/// The seed lab, validated. Used when no `-t FILE` is given.
pub fn seed() -> Topology {
    load_str("<built-in seed lab>", SEED_YAML).expect("the built-in seed lab is valid")
}
