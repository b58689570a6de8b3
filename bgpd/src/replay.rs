//! The speaker's inputs as data, for record-and-replay tests in the
//! style of holo's conformance tests: a scenario drives a [`Speaker`]
//! with [`Input`]s, the recorder writes each input with the [`Output`]s
//! it produced, and the replay feeds the same inputs to a fresh speaker
//! and wants exactly the same outputs. This works because the core reads
//! no clock: the time comes in as [`Input::Tick`], and the BFD
//! discriminators start from a seed given as [`Input::SeedBfd`] (or
//! [`Speaker::seed_bfd`]) instead of the process id and the clock.
//!
//! The logs live in `bgpd/tests/replay/`; its README says how to
//! re-record them.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::fsm::ConnId;
use crate::rib::PeerId;
use crate::speaker::{Output, Speaker, TimerKey};

/// One input of the speaker: the [`Speaker`] method it stands for, with
/// its arguments. Configuration (`set_peers`, `set_bfd`) is not here: a
/// scenario sets it up in code before its first input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// [`Speaker::tick`].
    Tick(SystemTime),
    /// [`Speaker::seed_bfd`].
    SeedBfd(u32),
    /// [`Speaker::on_accept`].
    Accept { remote: IpAddr, local: IpAddr },
    /// [`Speaker::on_connected`].
    Connected {
        peer: PeerId,
        conn: ConnId,
        result: Result<IpAddr, String>,
    },
    /// [`Speaker::on_frame`].
    Frame {
        peer: PeerId,
        conn: ConnId,
        #[serde(with = "hex")]
        frame: Vec<u8>,
    },
    /// [`Speaker::on_closed`].
    Closed {
        peer: PeerId,
        conn: ConnId,
        why: String,
    },
    /// [`Speaker::on_timer`].
    Timer(TimerKey),
    /// [`Speaker::on_bfd_packet`].
    BfdPacket {
        src: IpAddr,
        ttl: u8,
        #[serde(with = "hex")]
        payload: Vec<u8>,
    },
    /// [`Speaker::reset_peer`].
    ResetPeer(String),
    /// [`Speaker::flush`].
    Flush,
}

impl Input {
    /// Give the input to `s` and return what it output.
    pub fn apply(&self, s: &mut Speaker) -> Vec<Output> {
        match self {
            Input::Tick(now) => s.tick(*now),
            Input::SeedBfd(seed) => s.seed_bfd(*seed),
            Input::Accept { remote, local } => {
                s.on_accept(*remote, *local);
            }
            Input::Connected { peer, conn, result } => {
                s.on_connected(*peer, *conn, result.clone())
            }
            Input::Frame { peer, conn, frame } => {
                s.on_frame(*peer, *conn, frame)
            }
            Input::Closed { peer, conn, why } => s.on_closed(*peer, *conn, why),
            Input::Timer(key) => s.on_timer(*key),
            Input::BfdPacket { src, ttl, payload } => {
                s.on_bfd_packet(*src, *ttl, payload)
            }
            Input::ResetPeer(which) => {
                let _ = s.reset_peer(which);
            }
            Input::Flush => s.flush(),
        }
        s.take_outputs()
    }
}

/// One step of a log: an input and everything the speaker output for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub input: Input,
    pub outputs: Vec<Output>,
}

/// Bytes as a lowercase hex string, so that logs stay readable and
/// diffable.
pub mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(
        b: impl AsRef<[u8]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let b = b.as_ref();
        let mut out = String::with_capacity(b.len() * 2);
        for x in b {
            out.push_str(&format!("{x:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: From<Vec<u8>>>(
        d: D,
    ) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(D::Error::custom("odd number of hex digits"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(T::from)
            .map_err(D::Error::custom)
    }
}
