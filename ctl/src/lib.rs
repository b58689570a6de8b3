//! margayctl: node status, resources, IPAM and routes.
//!
//! The binary (`src/main.rs`) is a thin clap front end; every command is a
//! function here that returns the text to print, so tests drive the same
//! code the user runs.

pub mod diagnose;
pub mod import;
pub mod ipam;
pub mod output;
pub mod resources;
pub mod routes;
pub mod status;
