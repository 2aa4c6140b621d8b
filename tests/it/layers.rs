//! The crate's layers point one way: foundation ← domain ← services ← commands ← main. A module
//! may use modules of its own layer or below, never above, so a newcomer can read the crate
//! from the bottom up and a change in the proxy cannot reach into the command line. This test
//! reads the sources and fails on the first `crate::…` path that goes up a layer, and on a new
//! top-level module that has not been given a layer.

use std::path::Path;

/// Every top-level module and its layer.
const LAYERS: &[(&str, u8)] = &[
    // Foundation: no knowledge of till's domain.
    ("time", 0),
    ("env", 0),
    ("error", 0),
    ("output", 0),
    ("format", 0),
    ("json", 0),
    ("prompt", 0),
    ("terminal", 0),
    // Domain: keys, scopes, providers, configuration, storage, prices.
    ("childkey", 1),
    ("scope", 1),
    ("providers", 1),
    ("config", 1),
    ("secrets", 1),
    ("ledger", 1),
    ("pricing", 1),
    ("upstream", 1),
    ("mint", 1),
    ("agents", 1),
    // Services: the proxy, the agent's process and sandbox, rotation.
    ("proxy", 2),
    ("process", 2),
    ("sandbox", 2),
    ("rotation", 2),
    // The command line.
    ("cli", 3),
    ("commands", 3),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::NAME` paths in `text`, outside comments.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, name));
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let Some(own) = layer(&top) else {
            problems.push(format!(
                "{}: module `{top}` has no layer in tests/it/layers.rs",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, name) in crate_paths(&text) {
            match layer(&name) {
                Some(l) if l > own => problems.push(format!(
                    "{}:{line}: `{top}` (layer {own}) uses `crate::{name}` (layer {l})",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layers point the wrong way:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_sees_a_path_that_goes_up() {
    let found = crate_paths("use crate::proxy::State; // crate::cli in a comment\n");
    assert_eq!(found, vec![(1, "proxy".to_string())]);
}
