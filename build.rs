//! Embeds every `checks/*.toml` catalog entry into the binary at build time, as the Rust code that
//! builds it (parsed once here, so a broken entry fails the build and start-up parses nothing), and as
//! JSON for the catalog's test.

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
    let mut code = String::from("pub(crate) fn builtin_entries() -> Vec<Entry> {\n    vec![\n");
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
        code.push_str(&entry_code(&entry, &f.display().to_string()));
    }
    out.push_str("];\n");
    code.push_str("    ]\n}\n");
    let dir = env::var("OUT_DIR").unwrap();
    fs::write(Path::new(&dir).join("catalog_files.rs"), out).expect("write catalog_files.rs");
    fs::write(Path::new(&dir).join("catalog_entries.rs"), code).expect("write catalog_entries.rs");
}

/// One entry as the Rust expression that builds it, so start-up copies the catalog's text rather than
/// parsing it (the catalog's test checks it equals what serde makes of the same entry).
fn entry_code(e: &serde_json::Value, file: &str) -> String {
    use serde_json::Value as V;
    let fields = e
        .as_object()
        .unwrap_or_else(|| panic!("{file}: not a table"));
    let text = |v: &V, k: &str| -> String {
        let s = v
            .as_str()
            .unwrap_or_else(|| panic!("{file}: {k} is not a string"));
        format!("String::from({s:?})")
    };
    let texts = |v: &V, k: &str| -> String {
        let items: Vec<String> = v
            .as_array()
            .unwrap_or_else(|| panic!("{file}: {k} is not a list"))
            .iter()
            .map(|x| text(x, k))
            .collect();
        format!("vec![{}]", items.join(", "))
    };
    // `warn` -> `Warn`, `control-plane` -> `ControlPlane`: the variants' serde names.
    let variant = |v: &V, k: &str| -> String {
        v.as_str()
            .unwrap_or_else(|| panic!("{file}: {k} is not a string"))
            .split('-')
            .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
            .collect()
    };
    let mut out = String::from("        Entry {\n");
    let has = |k: &str| fields.contains_key(k);
    for k in ["references", "kubeadm"] {
        if !has(k) {
            out.push_str(&format!("            {k}: Vec::new(),\n"));
        }
    }
    if !has("fix") {
        out.push_str("            fix: false,\n");
    }
    for (k, v) in fields {
        let value = match k.as_str() {
            "id" | "title" | "symptom" | "why" | "remediation" => text(v, k),
            "references" | "kubeadm" => texts(v, k),
            "fix" => v
                .as_bool()
                .unwrap_or_else(|| panic!("{file}: fix is not a boolean"))
                .to_string(),
            "severity" => format!("Status::{}", variant(v, k)),
            "roles" => {
                let roles: Vec<String> = v
                    .as_array()
                    .unwrap_or_else(|| panic!("{file}: roles is not a list"))
                    .iter()
                    .map(|r| format!("Role::{}", variant(r, k)))
                    .collect();
                format!("vec![{}]", roles.join(", "))
            }
            other => panic!("{file}: unknown field {other}"),
        };
        out.push_str(&format!("            {k}: {value},\n"));
    }
    out.push_str("        },\n");
    out
}
