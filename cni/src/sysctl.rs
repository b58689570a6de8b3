//! Per-interface sysctls under /proc/sys/net. /proc/sys/net resolves to
//! the network namespace of the thread that opens the file, so container
//! sysctls are written from the thread that entered the container.

use std::io;

/// Writes `value` to /proc/sys/net/<path>.
pub fn set(path: &str, value: &str) -> io::Result<()> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::write(&full, value).map_err(|e| {
        io::Error::new(e.kind(), format!("writing {value} to {full}: {e}"))
    })
}

/// Reads /proc/sys/net/<path>, trimmed.
pub fn get(path: &str) -> io::Result<String> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("reading {full}: {e}")))
}
