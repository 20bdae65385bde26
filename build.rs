//! Embeds every `checks/*.toml` catalog entry into the binary at build time.

use std::{env, fs, path::Path};

fn main() {
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
        let abs = fs::canonicalize(f).expect("canonical catalog path");
        out.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            f.file_name().unwrap().to_string_lossy(),
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("catalog_files.rs");
    fs::write(dest, out).expect("write catalog_files.rs");
}
