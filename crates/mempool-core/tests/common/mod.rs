//! Helpers shared by the integration tests.

use std::path::Path;

/// The names of the files in a session directory other than hidden ones
/// (the session's lock file): spill files, and any temporary file left
/// behind.
pub(crate) fn spill_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("session directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !name.starts_with('.'))
        .collect()
}
