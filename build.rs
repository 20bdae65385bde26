//! Embeds every `checks/*.toml` catalog entry into the binary at build time, converted to JSON
//! (parsed once here, so a broken entry fails the build and start-up parses only JSON).

use std::{env, fs, path::Path};

fn main() {
    // A position-dependent executable has no relative relocations for the loader to apply at every
    // start; for a short-lived CLI that is most of its start-up cost (measured by `benches/host.rs`).
    // The static build (.cargo/config.toml: `+crt-static`, `relocation-model=static`) is already
    // non-PIE; `-no-pie` there would turn rustc's `-static` link into a broken dynamic one, so it is
    // only for a dynamic build (e.g. `cargo install`, which does not read the project's config).
    let static_crt =
        env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|f| f == "crt-static"));
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && !static_crt {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let dir = Path::new("checks");
    println!("cargo:rerun-if-changed=checks");
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("checks/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::from("pub(crate) static CATALOG_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let text = fs::read_to_string(f).expect("readable catalog entry");
        let entry: serde_json::Value = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", f.display()));
        out.push_str(&format!(
            "    ({:?}, {:?}),\n",
            f.file_name().unwrap().to_string_lossy(),
            entry.to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("catalog_files.rs");
    fs::write(dest, out).expect("write catalog_files.rs");
}
