//! cargo-fuzz entry for the `probe_wire` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("probe_wire").run)(data));
