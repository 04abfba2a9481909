//! # dvr-openflow: OpenFlow flows as data
//!
//! Flow, match and action types for the subset of OpenFlow that Neutron's
//! DVR pipeline uses, the `ovs-ofctl` printer and parser. The plan layer
//! builds these values, the twin (issue "spine, part 2") executes them, and
//! the same parser reads dumps from real hosts, so there is one notion of a
//! flow in the whole workspace.
#![forbid(unsafe_code)]

pub mod flow;
pub mod nx;
pub mod parse;

pub use flow::*;
pub use nx::*;
pub use parse::{ParseError, is_unmodelled_field, parse_actions, parse_flow, parse_flow_lenient, parse_flows};
