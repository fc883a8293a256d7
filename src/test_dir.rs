//! A scratch directory for the crate's unit tests, removed when dropped.
use std::fs;
use std::path::PathBuf;

/// `<temp>/dw-<label>-<pid>`, empty when made: the pid keeps two test runs
/// apart, the label two tests of one run.
pub(crate) struct TestDir(pub PathBuf);

impl TestDir {
    pub(crate) fn new(label: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("dw-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
