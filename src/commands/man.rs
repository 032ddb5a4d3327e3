//! `suitekey man DIR` (hidden; for packaging): the man pages, generated from the clap
//! definitions in [`crate::cli`]: `suitekey.1` and one `suitekey-COMMAND.1` per visible command.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::{Cli, ManArgs};
use crate::error::Error;

/// Writes every page into `args.dir` (made if missing), each whole or not at all, and prints
/// each page's path on `out`.
pub(super) fn run(args: &ManArgs, out: &mut dyn Write) -> Result<(), Error> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = vec![root.clone()];
    pages.extend(root.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    for page in pages {
        // Every page's footer names suitekey and its version (a command's page would show the
        // command's name and no version); the commit, which would not fit beside a long page
        // name, is in the VERSION section of suitekey.1.
        let man =
            clap_mangen::Man::new(page).source(concat!("suitekey ", env!("CARGO_PKG_VERSION")));
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text).map_err(|e| failed(&path, &e))?;
        write_whole(&path, &text)?;
        writeln!(out, "{}", path.display())?;
    }
    out.flush()?;
    Ok(())
}

/// Writes `text` to `path` through a temporary file in the same directory, renamed into place.
fn write_whole(path: &Path, text: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(dir, &e))?;
    file.write_all(text).map_err(|e| failed(path, &e))?;
    file.as_file().sync_all().map_err(|e| failed(path, &e))?;
    // Readable by all, like any man page (a temporary file is made 0600).
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| failed(path, &e))?;
    file.persist(path).map_err(|e| failed(path, &e.error))?;
    Ok(())
}

/// The error for a page that could not be written, naming the file.
fn failed(path: &Path, e: &std::io::Error) -> Error {
    Error::OutputFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}
