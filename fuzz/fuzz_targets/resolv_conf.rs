//! cargo-fuzz entry for the `resolv_conf` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("resolv_conf").run)(data));
