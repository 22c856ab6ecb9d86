//! The module map in `docs/architecture.md` ("Modules") lists every source file of every crate,
//! and nothing that is not there: the map and `ls` agree.

use std::collections::BTreeSet;
use std::path::Path;

fn sources(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.insert(
                p.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
}

#[test]
fn the_module_map_matches_the_source_tree() {
    let root = crate::manifest_dir().join("../..");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Modules (crates/*/src)")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/architecture.md has a \"Modules (crates/*/src)\" section");
    // What the map lists: `- **crate**:` then `  - `file.rs`: ...`.
    let mut listed = BTreeSet::new();
    let mut krate = String::new();
    for line in section.lines() {
        if let Some(c) = line
            .strip_prefix("- **")
            .and_then(|l| l.strip_suffix("**:"))
        {
            krate = c.to_string();
        } else if let Some(f) = line.strip_prefix("  - `").and_then(|l| l.split('`').next()) {
            listed.insert(format!("{krate}/src/{f}"));
        }
    }
    let mut present = BTreeSet::new();
    let crates = root.join("crates");
    for c in std::fs::read_dir(&crates).unwrap().flatten() {
        if c.path().join("src").is_dir() {
            sources(&c.path().join("src"), &crates, &mut present);
        }
    }
    let missing: Vec<_> = present.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&present).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's module map disagrees with the tree (run python3 scripts/module-map.py): not listed {missing:?}, listed but gone {stale:?}"
    );
}
