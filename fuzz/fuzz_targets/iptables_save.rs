//! cargo-fuzz entry for the `iptables_save` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("iptables_save").run)(data));
