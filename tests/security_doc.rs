//! SECURITY.md says that every claim names the test that shows it. This keeps that true: each
//! `tests/FILE.rs::name`, `src/FILE.rs::tests::name` and `scripts/X.sh` it names must exist, so a
//! renamed or deleted test fails here instead of leaving the threat model pointing at nothing.

use std::fs;
use std::path::Path;

/// The test references in a text: backticked `path.rs::…::name` or `scripts/….sh`.
fn references(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|r| r.contains(".rs::") || (r.starts_with("scripts/") && r.ends_with(".sh")))
        .collect()
}

/// Whether `file` defines a function `name` (a test, or a helper the row names).
fn defines(file: &str, name: &str) -> bool {
    fs::read_to_string(file).is_ok_and(|source| {
        source.lines().any(|line| {
            let line = line.trim_start();
            ["fn ", "async fn "].iter().any(|p| {
                line.strip_prefix(p).is_some_and(|rest| {
                    rest.strip_prefix(name)
                        .is_some_and(|after| after.starts_with('(') || after.starts_with('<'))
                })
            })
        })
    })
}

fn missing(reference: &str) -> bool {
    match reference.split_once("::") {
        Some((file, path)) => {
            let name = path.rsplit("::").next().unwrap_or(path);
            !defines(file, name)
        }
        None => !Path::new(reference).is_file(),
    }
}

#[test]
fn every_test_security_md_names_exists() {
    let text = fs::read_to_string("SECURITY.md").expect("SECURITY.md at the repository root");
    let refs = references(&text);
    assert!(refs.len() > 40, "only {} test references found", refs.len());
    let gone: Vec<&str> = refs.into_iter().filter(|r| missing(r)).collect();
    assert!(
        gone.is_empty(),
        "SECURITY.md names tests that do not exist: {gone:#?}"
    );
}

#[test]
fn a_misspelled_reference_is_caught() {
    assert!(missing("tests/security_doc.rs::no_such_test"));
    assert!(missing(
        "tests/no_such_file.rs::every_test_security_md_names_exists"
    ));
    assert!(missing("scripts/no-such-script.sh"));
    assert!(!missing(
        "tests/security_doc.rs::every_test_security_md_names_exists"
    ));
    assert!(!missing("src/lib.rs"));
}
