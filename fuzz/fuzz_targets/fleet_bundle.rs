//! cargo-fuzz entry for the `fleet_bundle` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("fleet_bundle").run)(data));
