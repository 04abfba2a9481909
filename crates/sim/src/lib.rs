//! # dvr-sim: the dataplane twin
//!
//! Executes a plan exactly as Open vSwitch and the Linux kernel would, and
//! explains every step: an OpenFlow engine with OVS semantics ([`ofp`]), a
//! namespace stack with ARP, policy routing and netfilter NAT with conntrack
//! ([`stack`], [`netfilter`]), a fabric joining hosts ([`world`]), and the
//! tracer that follows a packet and its reply ([`trace`], [`render`]).
//! Sans I/O: the world is a value; tracing mutates only it.
#![forbid(unsafe_code)]

pub mod allpairs;
pub mod conntrack;
pub mod demo;
pub mod firewall;
pub mod import;
pub mod name;
pub mod netfilter;
pub mod ofp;
pub mod packet;
pub mod render;
pub mod stack;
pub mod step;
mod steptext;
pub mod throughput;
pub mod trace;
pub mod verify;
pub mod world;

pub use name::Name;
pub use packet::{Encap, L4};
pub use trace::{
    Change, Disposition, DropReason, Dropped, Fate, Hop, HopKind, Lineage, NoSink, Place, Recorder, Sink, Step, Trace, TraceError,
    TraceRequest, Verdict, delivery_path, prime_neighbours, reach, trace, warm_up,
};
pub use world::{Endpoint, EndpointAt, World};
