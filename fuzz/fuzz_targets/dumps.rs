//! The dump importer (`dvr import`, `dvr trace --dumps`): any set of files
//! named as `dvr collect` or the real-Neutron harness writes them gives an
//! imported world or an `ImportError`, never a panic; an import that succeeds
//! can build its twin.
//!
//! Input: files separated by lines `=== <file name>`, for one host.
#![no_main]

use dvr_sim::import::{HostDump, import};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut dump = HostDump { host: "fuzz".into(), ..Default::default() };
    for part in text.split("=== ").skip(1).take(64) {
        let (name, body) = part.split_once('\n').unwrap_or((part, ""));
        dump.files.insert(name.trim().to_string(), body.to_string());
    }
    if let Ok(imp) = import(&[dump]) {
        let _ = imp.world();
    }
});
