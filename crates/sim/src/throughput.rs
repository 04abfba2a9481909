//! Timing explained traces: the one loop behind `dvr bench`'s trace figures
//! (the figures of record) and the `tracebench` example, so both measure
//! the same work.

use crate::{TraceError, TraceRequest, World};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What a trace throughput figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceMode {
    /// Verdicts only (`reach`: no hop recorded).
    Reach,
    /// The explained trace: every hop recorded, typed (`dvr trace` before printing).
    Trace,
    /// The explained trace rendered as `dvr trace` prints it (full text).
    Text,
}

impl TraceMode {
    /// The mode as a report names it.
    pub fn label(self) -> &'static str {
        match self {
            TraceMode::Reach => "reach",
            TraceMode::Trace => "trace",
            TraceMode::Text => "trace+text",
        }
    }
}

/// What [`time_traces`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Traces made in the timed rounds.
    pub traces: usize,
    /// Time spent in them (the copies of a cold twin not counted).
    pub spent: Duration,
    /// A warm twin's untimed first round, which builds what the paths reach
    /// on a lazy twin (`None` on a cold twin).
    pub first_round: Option<Duration>,
}

/// Trace `reqs` round after round for at least `budget`, in `mode`, on one
/// warm copy of `base` (after an untimed first round) or, `cold`, on a fresh
/// copy of `base` per trace.
pub fn time_traces(base: &World, reqs: &[TraceRequest], mode: TraceMode, cold: bool, budget: Duration) -> Result<Timed, TraceError> {
    let run = |w: &mut World, r: &TraceRequest| -> Result<(), TraceError> {
        match mode {
            TraceMode::Reach => drop(std::hint::black_box(crate::reach(w, r)?)),
            TraceMode::Trace => drop(std::hint::black_box(crate::trace(w, r)?)),
            TraceMode::Text => drop(std::hint::black_box(crate::render::text(&crate::trace(w, r)?))),
        }
        Ok(())
    };
    let mut warm = base.clone();
    let first_round = if cold {
        None
    } else {
        let t0 = Instant::now();
        for r in reqs {
            run(&mut warm, r)?;
        }
        Some(t0.elapsed())
    };
    let (mut traces, mut spent) = (0, Duration::ZERO);
    while spent < budget && !reqs.is_empty() {
        for r in reqs {
            let mut fresh;
            let w = if cold {
                fresh = base.clone();
                &mut fresh
            } else {
                &mut warm
            };
            let t0 = Instant::now();
            run(w, r)?;
            spent += t0.elapsed();
            traces += 1;
        }
    }
    Ok(Timed { traces, spent, first_round })
}
