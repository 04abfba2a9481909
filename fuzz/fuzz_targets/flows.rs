//! The `ovs-ofctl` flow parser: any text parses or gives a `ParseError`; a flow
//! that parses prints as text that parses back to the same flow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(flows) = dvr_openflow::parse::parse_flows(text) {
        for f in flows {
            let printed = f.to_string();
            let again = dvr_openflow::parse::parse_flow(&printed)
                .unwrap_or_else(|e| panic!("printed flow `{printed}` does not parse back: {e}"));
            assert_eq!(again, f, "printed flow `{printed}` parses back differently");
        }
    }
});
