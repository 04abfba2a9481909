//! Progress for long commands: `indicatif` bars when stderr is a terminal,
//! one plain line per step otherwise (logs, CI, pipes).

use dvr_realize::{HostStage, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

fn bar(len: usize, prefix: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}").expect("a valid template").progress_chars("=> "));
    b.set_prefix(prefix.to_string());
    b
}

/// `lab up`: a bar per stage, advancing per host.
pub struct LabUp {
    tty: bool,
    current: Option<(HostStage, ProgressBar)>,
}

impl LabUp {
    /// Bars when stderr is a terminal.
    pub fn new() -> LabUp {
        LabUp { tty: std::io::stderr().is_terminal(), current: None }
    }

    /// Show one progress event.
    pub fn on(&mut self, p: Progress) {
        match p {
            Progress::Host { host, stage, done, total } if self.tty => {
                if self.current.as_ref().is_none_or(|(s, _)| *s != stage) {
                    if let Some((_, b)) = self.current.take() {
                        b.finish();
                    }
                    let name = match stage {
                        HostStage::Setup => "hosts up",
                        HostStage::Converge => "converged",
                    };
                    self.current = Some((stage, bar(total, name)));
                }
                if let Some((_, b)) = &self.current {
                    b.set_position(done as u64);
                    b.set_message(host.to_string());
                }
            }
            Progress::Note(n) if self.tty => match &self.current {
                Some((_, b)) => b.println(format!("lab up: {n}")),
                None => eprintln!("lab up: {n}"),
            },
            other => eprintln!("lab up: {other}"),
        }
    }

    /// Complete the last bar.
    pub fn finish(&mut self) {
        if let Some((_, b)) = self.current.take() {
            b.set_position(b.length().unwrap_or(0));
            b.finish_with_message("done");
        }
    }
}

/// `bench`: one bar over its stages.
pub struct Stages {
    bar: Option<ProgressBar>,
}

impl Stages {
    /// A bar of `total` stages when stderr is a terminal.
    pub fn new(total: usize) -> Stages {
        Stages { bar: std::io::stderr().is_terminal().then(|| bar(total, "bench")) }
    }

    /// Start the next stage.
    pub fn stage(&self, what: &str) {
        match &self.bar {
            Some(b) => {
                if b.message().is_empty() {
                    b.set_position(0);
                } else {
                    b.inc(1);
                }
                b.set_message(what.to_string());
            }
            None => eprintln!("bench: {what}"),
        }
    }

    /// All stages done.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.set_position(b.length().unwrap_or(0));
            b.finish_with_message("done");
        }
    }
}
