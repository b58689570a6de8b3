//! The restarting speaker of RFC 4724 section 4.1: after `bgpd
//! --graceful-restart` starts, route selection results stay unadvertised
//! until every peer has sent its End-of-RIB (or the Selection_Deferral_Timer
//! expires); then the whole table goes out, each peer's followed by
//! End-of-RIB. Meanwhile the peers keep our routes stale and felix-lite
//! keeps the FIB, so a half-learnt table never replaces the full one.

use std::collections::HashSet;

use crate::fsm::ConnId;
use crate::rib::{LOCAL, PeerId};
use crate::speaker::{Output, Speaker, SpeakerCfg, TimerKey, TimerKind};
use bgp_wire::Family;

/// State of a deferred selection.
#[derive(Debug, Default)]
pub(crate) struct Deferral {
    /// End-of-RIB received, per session (a new session must send its own).
    eor: HashSet<(PeerId, ConnId, Family)>,
}

const TIMER: TimerKey = TimerKey {
    peer: LOCAL,
    kind: TimerKind::SelectionDeferral,
};

/// The deferral a new speaker starts with, and the timer bounding it.
pub(crate) fn start(cfg: &SpeakerCfg) -> (Option<Deferral>, Vec<Output>) {
    if !cfg.restarting {
        return (None, Vec::new());
    }
    // RFC 4724 4.1: the timer bounds the wait for peers that never send
    // End-of-RIB (or never come back).
    let arm = Output::ArmTimer(TIMER, cfg.select_defer);
    (Some(Deferral::default()), vec![arm])
}

impl Speaker {
    /// Whether selection results are still held back (RFC 4724 4.1).
    pub fn deferring(&self) -> bool {
        self.deferral.is_some()
    }

    /// End-of-RIB for family `f` from peer `id` on connection `conn`.
    pub(crate) fn deferral_eor(&mut self, id: PeerId, conn: ConnId, f: Family) {
        if let Some(d) = self.deferral.as_mut() {
            d.eor.insert((id, conn, f));
            self.check_deferral();
        }
    }

    /// End the deferral once no peer is left to wait for.
    pub(crate) fn check_deferral(&mut self) {
        let Some(d) = &self.deferral else {
            return;
        };
        let waiting = self.peers.values().any(|p| {
            let Some(s) = &p.session else {
                // Not (yet) back: it may still bring routes.
                return true;
            };
            match &s.neg.peer_gr {
                // RFC 4724 4.1: "excluding the ones with the "Restart
                // State" bit set in the received capability and excluding
                // the ones that do not advertise the graceful restart
                // capability".
                None => false,
                Some(g) if g.restart_state => false,
                Some(_) => s
                    .neg
                    .families
                    .iter()
                    .any(|f| !d.eor.contains(&(p.id, s.conn, *f))),
            }
        });
        if !waiting {
            self.end_deferral("End-of-RIB from every peer");
        }
    }

    /// RFC 4724 4.1: selection is complete: "the Restarting Speaker ...
    /// MUST send the End-of-RIB marker to all its peers" after its
    /// updates. Every established peer's queue (the table as selected so
    /// far) goes out now, with End-of-RIB, which `pack` appends.
    pub(crate) fn end_deferral(&mut self, why: &str) {
        if self.deferral.is_none() {
            return;
        }
        // Export the changes still queued (e.g. routes that came with the
        // last End-of-RIB) while packing is held, so that End-of-RIB
        // follows the whole table rather than part of it.
        self.flush();
        self.deferral = None;
        tracing::info!(why, "graceful restart: route selection complete");
        self.out.push(Output::StopTimer(TIMER));
        // The restart is over: later OPENs carry no Restart State bit.
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in &ids {
            let caps = self.our_caps(&self.peers[id].cfg);
            if let Some(p) = self.peers.get_mut(id) {
                p.nbr.set_caps(caps);
            }
        }
        for id in ids {
            self.pack(id);
        }
    }
}
