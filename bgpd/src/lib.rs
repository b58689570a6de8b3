//! margay's BGP speaker: sans-IO FSM, RIB and policy plus thin tokio tasks.

pub mod bfd;
pub mod caps;
pub mod config;
pub mod config_cache;
pub mod control;
pub mod decision;
mod events;
mod export;
pub mod filter;
pub mod fsm;
pub mod heap;
pub mod metrics;
pub mod neighbor;
pub mod network;
pub mod policy;
pub mod replay;
mod restart;
pub mod rib;
pub mod secrets;
pub mod services;
pub mod sockopt;
pub mod speaker;
pub mod tasks;
