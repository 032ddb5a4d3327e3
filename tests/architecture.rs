//! docs/ARCHITECTURE.md's layer table says which top-level module of `src/` may use which. This
//! keeps it true: every module has a row, its non-test code names exactly the crate modules its
//! row lists (or, for "every module above", only modules of lower layers), and every module it
//! may use sits on a lower layer, so the crate's modules form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One row of the table: its layer and what it may use (`None`: every module above).
#[derive(Debug)]
struct Row {
    layer: u32,
    may_use: Option<BTreeSet<String>>,
}

/// The rows of the table under the `checked by tests/architecture.rs` marker.
fn table(doc: &str) -> BTreeMap<String, Row> {
    let start = doc
        .find("checked by tests/architecture.rs")
        .expect("the table's marker in docs/ARCHITECTURE.md");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let layer = cells.get(1)?.parse().ok()?;
            let module = names(cells[2]).into_iter().next()?;
            let may_use = (!cells[4].contains("every module above")).then(|| names(cells[4]));
            Some((module, Row { layer, may_use }))
        })
        .collect()
}

/// The crate modules that `source` names (`crate::NAME`), outside its tests: an inline
/// `#[cfg(test)]` module ends what is read, and another `#[cfg(test)]` item line is skipped.
fn uses(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            match lines.next() {
                // An inline test module (`mod tests {`) ends the code; `mod harness;` is one line.
                Some(next) if next.trim_start().starts_with("mod ") && next.ends_with('{') => break,
                _ => continue,
            }
        }
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + 7..];
            // `crate::{a, b::c}` names several; `crate::Error` is lib.rs's re-export of `error`.
            let group = rest
                .strip_prefix('{')
                .map(|g| g.split('}').next().unwrap_or(g));
            for item in group.map_or_else(|| vec![rest], |g| g.split(',').collect()) {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                match name.as_str() {
                    "" | "self" => {}
                    "Error" => {
                        found.insert("error".to_owned());
                    }
                    _ => {
                        found.insert(name);
                    }
                }
            }
        }
    }
    found
}

/// Every top-level module of `src/` and the crate modules its non-test files name.
fn modules(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = BTreeMap::new();
    for entry in fs::read_dir(src).expect("src/") {
        let path = entry.expect("src/ entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut named = BTreeSet::new();
        for file in rust_files(&path) {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            named.extend(uses(&fs::read_to_string(&file).expect("read source")));
        }
        named.remove(&name);
        all.insert(name, named);
    }
    all
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_dir() {
        fs::read_dir(path)
            .expect("read dir")
            .flat_map(|e| rust_files(&e.expect("dir entry").path()))
            .collect()
    } else if path.extension().is_some_and(|e| e == "rs") {
        vec![path.to_owned()]
    } else {
        Vec::new()
    }
}

/// What is wrong with the table, given what the code uses.
fn violations(
    rows: &BTreeMap<String, Row>,
    code: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, used) in code {
        let Some(row) = rows.get(module) else {
            wrong.push(format!("`{module}` has no row in the table"));
            continue;
        };
        for other in used {
            match rows.get(other) {
                Some(o) if o.layer >= row.layer => wrong.push(format!(
                    "`{module}` (layer {}) uses `{other}` (layer {}), which is not below it",
                    row.layer, o.layer
                )),
                None => wrong.push(format!("`{module}` uses `{other}`, which has no row")),
                _ => {}
            }
        }
        if let Some(may_use) = &row.may_use {
            for extra in used.difference(may_use) {
                wrong.push(format!(
                    "`{module}` uses `{extra}`, which its row does not list"
                ));
            }
            for stale in may_use.difference(used) {
                wrong.push(format!(
                    "`{module}`'s row lists `{stale}`, which it does not use"
                ));
            }
        }
    }
    for module in rows.keys().filter(|m| !code.contains_key(*m)) {
        wrong.push(format!(
            "the table has a row for `{module}`, which is not in src/"
        ));
    }
    wrong
}

#[test]
fn the_layer_table_matches_what_each_module_uses() {
    let doc = fs::read_to_string("docs/ARCHITECTURE.md").expect("docs/ARCHITECTURE.md");
    let rows = table(&doc);
    assert!(rows.len() >= 10, "the table has only {} rows", rows.len());
    let wrong = violations(&rows, &modules(Path::new("src")));
    assert!(
        wrong.is_empty(),
        "docs/ARCHITECTURE.md's layers: {wrong:#?}"
    );
}

#[test]
fn a_use_of_a_module_above_or_unlisted_is_caught() {
    let doc = "checked by tests/architecture.rs\n\
               | layer | module | owns | may use |\n\
               | 0 | `kind` | k | — |\n\
               | 1 | `jose` | j | `kind` |\n";
    let rows = table(doc);
    let code = |jose: &[&str], kind: &[&str]| {
        BTreeMap::from([
            (
                "jose".to_owned(),
                jose.iter().map(|s| s.to_string()).collect(),
            ),
            (
                "kind".to_owned(),
                kind.iter().map(|s| s.to_string()).collect(),
            ),
        ])
    };
    assert!(violations(&rows, &code(&["kind"], &[])).is_empty());
    assert_eq!(
        violations(&rows, &code(&["kind"], &["jose"])),
        [
            "`kind` (layer 0) uses `jose` (layer 1), which is not below it",
            "`kind` uses `jose`, which its row does not list"
        ],
        "a use upwards"
    );
    assert_eq!(violations(&rows, &code(&[], &[])).len(), 1, "a stale entry");
    assert_eq!(
        uses(
            "use crate::kind::Kind;\nuse crate::{jose, netsuite::Scope};\n#[cfg(test)]\nmod tests {\n use crate::agent;\n}\n"
        ),
        BTreeSet::from(["jose".to_owned(), "kind".to_owned(), "netsuite".to_owned()])
    );
}
