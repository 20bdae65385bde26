//! cargo-fuzz entry for the `join_replay` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("join_replay").run)(data));
