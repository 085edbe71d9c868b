//! Temporary directories with files in them, removed when dropped.

use std::path::{Path, PathBuf};

/// A temporary directory for one test.
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// Creates an empty directory.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("a temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The path of `name` in it (nothing is created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Writes `contents` to `name` in it and returns the path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Creates the directory `name` in it and returns the path.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// The path of `name` in it, as a string for a command-line flag.
    pub fn arg(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A path as a string for a command-line flag.
///
/// # Panics
/// When it is not UTF-8.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
