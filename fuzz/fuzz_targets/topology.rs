//! The topology loader and validator: any text either loads or gives a
//! `TopologyError`, within the loader's limits, never a panic or a hang. A file
//! that loads is also planned under both profiles (planning must never fail on a
//! valid topology).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(topo) = dvr_model::load_str("fuzz.yaml", text) {
        for profile in [dvr_plan::Profile::Walkthrough, dvr_plan::Profile::Current] {
            dvr_plan::plan(&topo, profile).expect("a valid topology always plans");
        }
    }
});
