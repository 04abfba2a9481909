//! # dvr-draw: pictures of the deployment and of every path
//!
//! People learn DVR from diagrams: hosts as boxes, their bridges joined by
//! patch ports, the Neutron namespaces with their devices, instances hanging
//! on `br-int`, and one line per physical network joining the hosts' NICs.
//! This crate lays that out ([`scene`]), draws it as SVG ([`svg`]) or emits
//! Graphviz DOT for people's own tooling ([`dot`]), overlays a traced path
//! (request and reply in two colours, numbered hops, rewrites and drops), and
//! builds the self-contained HTML report of `dvr demo --html` ([`report`]).
//!
//! ## Why hand layout
//! The picture is a fixed set of tiers (namespaces and instances above
//! `br-int`, provider bridges and NICs below it, physical networks across
//! the bottom), with hosts as boxes containing their parts. The maintained
//! pure-Rust layout crate, `layout-rs` 0.1, flattens Graphviz subgraphs
//! (no cluster boxes), so it cannot draw a host as a box around its bridges
//! and namespaces; a tiered grid is also what the walkthrough's own diagrams
//! use, and it is deterministic, so golden tests can compare structure.
//! `--format dot` hands the same graph, with clusters, to Graphviz.
#![forbid(unsafe_code)]

pub mod dot;
pub mod report;
pub mod scene;
pub mod svg;

pub use scene::{Filter, Scene, build_scene};
