//! Shared helpers for the integration tests: loading hex vectors.

#![allow(dead_code)]

pub mod cases;

use std::path::PathBuf;

/// Reads `tests/vectors/<name>`: `#` lines are comments, the rest is hex
/// (whitespace ignored).
pub fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hex: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(&hex).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lists the vector files in `tests/vectors/<dir>`.
pub fn vectors_in(dir: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(dir);
    let mut v: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hex"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}
