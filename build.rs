//! Build script: the git commit `suitekey --version` names.
//!
//! Sets `SUITEKEY_COMMIT` to `git rev-parse --short HEAD` of the checkout being built, with
//! `-dirty` appended when the files the build reads (src/, build.rs, Cargo.toml, Cargo.lock)
//! differ from that commit, or to `unknown` when the package is not a git checkout's root (a
//! crates.io download, `cargo package`'s copy, no git installed).
//!
//! It runs again when HEAD moves (the files `git` names for HEAD, its branch and packed refs)
//! or a file the build reads changes, and only then: not on edits to tests or docs, so they
//! do not rebuild the crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for path in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = commit(&dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SUITEKEY_COMMIT={commit}");
}

/// The short commit of the checkout whose root is `dir`, `-dirty` when the build's inputs
/// differ from it; None when `dir` is not a checkout's root or git fails.
fn commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    // A package unpacked inside someone else's checkout (cargo's registry under a repository,
    // `cargo package`'s target/package/) must not claim that checkout's commit.
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    watch_head(dir);
    let short = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let changes = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=normal",
            "--",
            "src",
            "build.rs",
            "Cargo.toml",
            "Cargo.lock",
        ],
    )?;
    Some(if changes.is_empty() {
        short
    } else {
        format!("{short}-dirty")
    })
}

/// Asks cargo to run this script again when HEAD moves: HEAD itself (a checkout), the branch
/// it names (a commit) and the packed refs. Only files that exist: a missing one would make
/// cargo run the script on every build.
fn watch_head(dir: &Path) {
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
    }
    for file in files {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &file]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// `git ARGS` run in `dir`: its stdout, trimmed, when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8(output.stdout).ok()?.trim().to_owned())
}
