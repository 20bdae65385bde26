//! cargo-fuzz entry for the `bundle_frame` target of `k8sdoctor::fuzz_targets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| (k8sdoctor::fuzz_targets::target("bundle_frame").run)(data));
