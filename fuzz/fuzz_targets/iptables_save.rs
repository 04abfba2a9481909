//! The `iptables-save` reader that `lab up` uses to compare a namespace's NAT
//! rules with the plan: any text is read without a panic, and reading is
//! deterministic (the same text gives the same comparison key).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let a = dvr_realize::host::ipt_lines(text);
    let b = dvr_realize::host::ipt_lines(text);
    assert_eq!(a, b);
    let lines: usize = a.values().map(Vec::len).sum();
    assert!(lines <= text.lines().count(), "more rules than lines");
});
