//! Prometheus metrics (sessions by state, UPDATEs in/out, prefixes, FSM
//! transitions, BFD sessions by state and BFD Downs acted on, sessions
//! held Idle and max-prefix Ceases) and a
//! minimal HTTP responder for `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::speaker::Speaker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabel {
    kind: String,
    name: String,
    field: String,
}

/// An invalid datastore object: what `margay_invalid_objects` counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabel {
    pub kind: String,
    pub name: String,
}

/// The metric handles the main loop updates.
#[derive(Clone)]
pub struct Metrics {
    sessions: Family<StateLabel, Gauge>,
    updates_in: Counter,
    updates_out: Counter,
    transitions: Counter,
    prefixes: Gauge,
    bfd_sessions: Family<StateLabel, Gauge>,
    bfd_downs: Counter,
    held_idle: Gauge,
    max_prefix_ceases: Counter,
    unsupported: Family<FieldLabel, Gauge>,
    invalid: Family<ObjectLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Create the metrics and register them.
    pub fn new(reg: &mut Registry) -> Metrics {
        let m = Metrics {
            sessions: Family::default(),
            updates_in: Counter::default(),
            updates_out: Counter::default(),
            transitions: Counter::default(),
            prefixes: Gauge::default(),
            bfd_sessions: Family::default(),
            bfd_downs: Counter::default(),
            held_idle: Gauge::default(),
            max_prefix_ceases: Counter::default(),
            unsupported: Family::default(),
            invalid: Family::default(),
        };
        reg.register(
            "bgpd_sessions",
            "BGP sessions by FSM state",
            m.sessions.clone(),
        );
        reg.register(
            "bgpd_updates_received",
            "UPDATE messages received",
            m.updates_in.clone(),
        );
        reg.register(
            "bgpd_updates_sent",
            "UPDATE messages sent",
            m.updates_out.clone(),
        );
        reg.register(
            "bgpd_fsm_transitions",
            "FSM state changes",
            m.transitions.clone(),
        );
        reg.register(
            "bgpd_rib_prefixes",
            "prefixes in the Loc-RIB",
            m.prefixes.clone(),
        );
        reg.register(
            "bgpd_bfd_sessions",
            "BFD sessions by state (RFC 5880 bfd.SessionState)",
            m.bfd_sessions.clone(),
        );
        reg.register(
            "bgpd_bfd_downs",
            "BFD Down events that tore a BGP session down or flushed its stale routes",
            m.bfd_downs.clone(),
        );
        reg.register(
            "bgpd_sessions_held_idle",
            "sessions held Idle after a max-prefix Cease, until their restart interval or margayctl node reset",
            m.held_idle.clone(),
        );
        reg.register(
            "bgpd_max_prefix_ceases",
            "sessions ended with Cease / Maximum Number of Prefixes Reached (RFC 4486)",
            m.max_prefix_ceases.clone(),
        );
        reg.register(
            "bgpd_unsupported_fields",
            "stored fields bgpd does not implement (1 per kind, name, field)",
            m.unsupported.clone(),
        );
        reg.register(
            "margay_invalid_objects",
            "datastore objects left out because they are bad (1 each, by \
             kind and name; see margayctl node status)",
            m.invalid.clone(),
        );
        m
    }

    /// Publish the stored fields bgpd does not act on (replaces the set).
    pub fn set_unsupported(
        &self,
        fields: &[crate::config::daemon_opts::UnsupportedField],
    ) {
        self.unsupported.clear();
        for f in fields {
            self.unsupported
                .get_or_create(&FieldLabel {
                    kind: f.kind.to_string(),
                    name: f.name.clone(),
                    field: f.field.to_string(),
                })
                .set(1);
        }
    }

    /// Replace the set of invalid objects with `objects`.
    pub fn set_invalid(&self, objects: &[margay_ctlproto::InvalidObject]) {
        set_invalid(&self.invalid, objects);
    }

    /// Copy the speaker's counters into the metrics.
    pub fn update(&self, s: &Speaker) {
        set_by_state(
            &self.sessions,
            s.states().iter().map(|(st, n)| (st.name(), *n)),
        );
        let sync = |c: &Counter, v: u64| {
            let cur = c.get();
            if v > cur {
                c.inc_by(v - cur);
            }
        };
        sync(&self.updates_in, s.counters.updates_in);
        sync(&self.updates_out, s.counters.updates_out);
        sync(&self.transitions, s.counters.fsm_transitions);
        sync(&self.bfd_downs, s.counters.bfd_downs);
        sync(&self.max_prefix_ceases, s.counters.max_prefix_ceases);
        self.held_idle.set(s.held_idle_count() as i64);
        self.prefixes.set(s.rib().len() as i64);
        set_by_state(
            &self.bfd_sessions,
            s.bfd_states().iter().map(|(st, n)| (st.name(), *n)),
        );
    }
}

/// `margay_invalid_objects`: 1 for each (kind, name) in `objects`, and
/// no series for any other (a fixed object disappears from the metric).
pub fn set_invalid(
    family: &Family<ObjectLabel, Gauge>,
    objects: &[margay_ctlproto::InvalidObject],
) {
    family.clear();
    for o in objects {
        family
            .get_or_create(&ObjectLabel {
                kind: o.kind.clone(),
                name: o.name.clone(),
            })
            .set(1);
    }
}

/// Set one gauge per state name.
fn set_by_state<'a>(
    family: &Family<StateLabel, Gauge>,
    counts: impl Iterator<Item = (&'a str, usize)>,
) {
    for (state, n) in counts {
        family
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(n as i64);
    }
}

/// Serve `GET /metrics` (any path) in the text exposition format.
pub async fn serve(
    addr: SocketAddr,
    reg: Arc<Registry>,
) -> std::io::Result<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        let reg = reg.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let mut body = String::new();
            if prometheus_client::encoding::text::encode(&mut body, &reg)
                .is_err()
            {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(kind: &str, name: &str) -> margay_ctlproto::InvalidObject {
        margay_ctlproto::InvalidObject {
            kind: kind.into(),
            name: name.into(),
            field: "spec".into(),
            error: "bad".into(),
        }
    }

    /// Each invalid object is one series; a fixed one disappears.
    #[test]
    fn invalid_objects_are_counted_by_kind_and_name() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        m.set_invalid(&[bad("BGPPeer", "typo"), bad("IPPool", "p")]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains(
                "margay_invalid_objects{kind=\"BGPPeer\",name=\"typo\"} 1"
            ),
            "{text}"
        );
        m.set_invalid(&[bad("IPPool", "p")]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(!text.contains("typo"), "{text}");
        assert!(text.contains("name=\"p\"} 1"), "{text}");
    }
}
