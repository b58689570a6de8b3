//! Replay tests (holo-style): each scenario in `scenarios.rs` drives a
//! sans-IO [`Speaker`] with [`Input`]s; its log (`<name>.json` here) holds
//! every input and the outputs the speaker produced for it. The replay
//! feeds the logged inputs to a speaker configured the same way and wants
//! exactly the logged outputs, so any change in what the speaker does
//! shows up as a diff of a log.
//!
//! The logs are written by code, never by hand: after an intended change
//! of behaviour, re-record them with
//! `MARGAY_RECORD_REPLAY=1 cargo test -p margay-bgpd --test replay -- --exact record`
//! and review the diff of `bgpd/tests/replay/*.json`.

use std::path::PathBuf;

use margay_bgpd::replay::{Input, Step};
use margay_bgpd::speaker::{Output, Speaker};
use serde::{Deserialize, Serialize};

mod scenarios;

/// A recorded scenario.
#[derive(Debug, Serialize, Deserialize)]
struct Log {
    /// What the configuration set up in code output (before any input).
    setup: Vec<Output>,
    steps: Vec<Step>,
}

/// The speaker under a scenario, with what it recorded so far.
pub struct Rec {
    s: Speaker,
    steps: Vec<Step>,
}

impl Rec {
    /// Give `input` to the speaker; returns its outputs.
    pub fn feed(&mut self, input: Input) -> Vec<Output> {
        let outputs = input.apply(&mut self.s);
        self.steps.push(Step {
            input,
            outputs: outputs.clone(),
        });
        outputs
    }

    pub fn speaker(&self) -> &Speaker {
        &self.s
    }
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/replay")
        .join(format!("{name}.json"))
}

fn run(sc: &scenarios::Scenario) -> Log {
    let mut s = (sc.setup)();
    let setup = s.take_outputs();
    let mut rec = Rec {
        s,
        steps: Vec::new(),
    };
    (sc.drive)(&mut rec, &setup);
    Log {
        setup,
        steps: rec.steps,
    }
}

/// With `MARGAY_RECORD_REPLAY=1`, writes the logs (see README.md);
/// otherwise each log must be exactly what its scenario records now. Not
/// `#[ignore]`d: CI runs the ignored tests too, and a recorder there would
/// rewrite the files the other tests of this binary are reading.
#[test]
fn record() {
    let write =
        std::env::var_os("MARGAY_RECORD_REPLAY").is_some_and(|v| v == "1");
    for sc in scenarios::ALL {
        let log = run(sc);
        let text = serde_json::to_string_pretty(&log).unwrap() + "\n";
        if write {
            std::fs::write(path(sc.name), text).unwrap();
        } else {
            let stored =
                std::fs::read_to_string(path(sc.name)).unwrap_or_else(|e| {
                    panic!("{}: {e} (record it, see README.md)", sc.name)
                });
            assert!(
                stored == text,
                "{}: the scenario now records another log: re-record it \
                 (README.md) and review the diff",
                sc.name
            );
        }
    }
}

/// Each log replays to exactly its recorded outputs.
#[test]
fn replay_matches_the_recorded_outputs() {
    for sc in scenarios::ALL {
        let text = std::fs::read_to_string(path(sc.name)).unwrap_or_else(|e| {
            panic!("{}: {e} (record it, see README)", sc.name)
        });
        let log: Log = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", sc.name));
        assert!(!log.steps.is_empty(), "{}: empty log", sc.name);
        let mut s = (sc.setup)();
        assert_eq!(s.take_outputs(), log.setup, "{}: setup", sc.name);
        for (i, step) in log.steps.iter().enumerate() {
            let outs = step.input.apply(&mut s);
            assert_eq!(
                outs, step.outputs,
                "{}: step {i} ({:?})",
                sc.name, step.input
            );
        }
    }
}

/// The scenarios still drive the speaker as recorded: the inputs they
/// would log now are the logged ones (a scenario edited without
/// re-recording fails here).
#[test]
fn scenarios_match_their_logs() {
    for sc in scenarios::ALL {
        let now = run(sc);
        let text = std::fs::read_to_string(path(sc.name)).unwrap();
        let log: Log = serde_json::from_str(&text).unwrap();
        let inputs = |l: &Log| -> Vec<Input> {
            l.steps.iter().map(|s| s.input.clone()).collect()
        };
        assert_eq!(inputs(&now), inputs(&log), "{}", sc.name);
    }
}
