//! # dvr-realize: the agent side
//!
//! Everything that touches a real host lives here and nowhere else: running
//! Open vSwitch instances (one per emulated host, each in its own network
//! namespace, userspace datapath), creating bridges and ports, and loading
//! flows. The planning crates stay pure; this crate turns their values into
//! commands and checks the results.

pub mod cmd;
pub mod collect;
pub mod host;
pub mod ip;
pub mod lab;
pub mod netlink;
pub mod ovs;
pub mod relay;
pub mod underlay;
pub mod unixctl;

pub use cmd::CmdError;
pub use lab::{HostStage, Lab, LabMeta, Progress};
pub use ovs::OvsInstance;
