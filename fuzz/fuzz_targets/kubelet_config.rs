//! cargo-fuzz entry for the `kubelet_config` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("kubelet_config").run)(data));
