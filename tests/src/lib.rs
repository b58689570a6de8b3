//! Cross-crate tests of the whole fabric (see `tests/`), and helpers they
//! share.

use std::path::PathBuf;

/// The directory holding the workspace's binaries of this build profile
/// (`target/debug` for `cargo test`): integration test executables live in
/// `target/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}
