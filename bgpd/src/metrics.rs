//! Prometheus metrics (sessions by state, UPDATEs in/out, prefixes, FSM
//! transitions, BFD sessions by state and BFD Downs acted on, sessions
//! held Idle and max-prefix Ceases, per-peer prefix counts, the build) and
//! the `/metrics` endpoint, on margay-httpd.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

use margay_ctlproto::{PeerStatus, Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::speaker::Speaker;
use crate::tasks::Input;

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

/// One configured peer: its address and its Calico-style name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
    name: String,
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
    peer_received: Family<PeerLabel, Gauge>,
    peer_accepted: Family<PeerLabel, Gauge>,
    peer_advertised: Family<PeerLabel, Gauge>,
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
            peer_received: Family::default(),
            peer_accepted: Family::default(),
            peer_advertised: Family::default(),
        };
        margay_httpd::register_build_info(
            reg,
            "bgpd_build_info",
            env!("CARGO_PKG_VERSION"),
        );
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
        // The three counts `margayctl node status` shows per peer.
        reg.register(
            "bgpd_peer_prefixes_received",
            "prefixes the peer announced and bgpd holds in its Adj-RIB-In",
            m.peer_received.clone(),
        );
        reg.register(
            "bgpd_peer_prefixes_accepted",
            "prefixes from the peer that import policy accepted into the Loc-RIB",
            m.peer_accepted.clone(),
        );
        reg.register(
            "bgpd_peer_prefixes_advertised",
            "prefixes bgpd advertises to the peer",
            m.peer_advertised.clone(),
        );
        m
    }

    /// Replace the per-peer prefix gauges with the peer table `peers`
    /// (a removed peer's series disappear).
    pub fn set_peers(&self, peers: &[PeerStatus]) {
        for f in [
            &self.peer_received,
            &self.peer_accepted,
            &self.peer_advertised,
        ] {
            f.clear();
        }
        for p in peers {
            let l = PeerLabel {
                peer: p.address.to_string(),
                name: p.name.clone(),
            };
            let set = |f: &Family<PeerLabel, Gauge>, v: u64| {
                f.get_or_create(&l)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&self.peer_received, p.prefixes_received);
            set(&self.peer_accepted, p.prefixes_accepted);
            set(&self.peer_advertised, p.prefixes_advertised);
        }
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

/// How long a scrape waits for the main loop's peer table before it
/// answers with the counters alone.
const PEER_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve `GET /metrics` in the text exposition format. The per-peer
/// gauges are filled at scrape time from the peer table, asked of the main
/// loop as `margayctl node status` asks for it: their cost is one walk of
/// the peers per scrape, not one per loop iteration.
pub async fn serve(
    addr: SocketAddr,
    reg: Arc<Registry>,
    metrics: Metrics,
    inputs: mpsc::UnboundedSender<Input>,
) -> std::io::Result<()> {
    let router = margay_httpd::metrics_router(move || {
        let (reg, metrics, inputs) =
            (reg.clone(), metrics.clone(), inputs.clone());
        async move {
            let (tx, rx) = oneshot::channel();
            if inputs.send(Input::Query(Request::Peers, tx)).is_ok() {
                // A busy or stopping loop: keep the last table.
                if let Ok(Ok(Response::Peers { peers })) =
                    tokio::time::timeout(PEER_QUERY_TIMEOUT, rx).await
                {
                    metrics.set_peers(&peers);
                }
            }
            margay_httpd::encode(&reg)
        }
    });
    margay_httpd::bind_and_serve(addr, router).await
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

    fn peer(
        addr: &str,
        received: u64,
        accepted: u64,
        advertised: u64,
    ) -> PeerStatus {
        PeerStatus {
            name: format!("Mesh_{addr}"),
            peer_type: margay_ctlproto::PeerType::Mesh,
            address: addr.parse().unwrap(),
            port: 179,
            local_as: 64512,
            remote_as: 64512,
            state: "Established".into(),
            since_unix: 0,
            prefixes_received: received,
            prefixes_accepted: accepted,
            prefixes_advertised: advertised,
            last_error: None,
            bfd_state: None,
            held_idle: None,
        }
    }

    /// `/metrics` over HTTP: the build, and per peer the three counts of
    /// `margayctl node status`, asked of the main loop at scrape time; a
    /// peer that left the table leaves the metrics.
    #[tokio::test]
    async fn the_endpoint_serves_build_info_and_per_peer_prefix_counts() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        // A stand-in for the main loop: two peers, then one.
        tokio::spawn(async move {
            let mut tables = vec![
                vec![peer("10.0.0.2", 5, 4, 3), peer("10.0.0.3", 0, 0, 7)],
                vec![peer("10.0.0.3", 1, 1, 7)],
            ]
            .into_iter();
            while let Some(input) = rx.recv().await {
                if let Input::Query(Request::Peers, reply) = input {
                    let peers = tables.next().unwrap_or_default();
                    let _ = reply.send(Response::Peers { peers });
                }
            }
        });
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        tokio::spawn(serve(addr, Arc::new(reg), m, tx));
        let scrape = || async {
            for _ in 0..100 {
                match margay_httpd::get(
                    addr,
                    "/metrics",
                    Duration::from_secs(5),
                )
                .await
                {
                    Ok(body) => return body,
                    // The server task may not be listening yet.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                }
            }
            panic!("no metrics endpoint on {addr}");
        };
        let text = scrape().await;
        for want in [
            format!("bgpd_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
            "bgpd_peer_prefixes_received{peer=\"10.0.0.2\",name=\"Mesh_10.0.0.2\"} 5".into(),
            "bgpd_peer_prefixes_accepted{peer=\"10.0.0.2\",name=\"Mesh_10.0.0.2\"} 4".into(),
            "bgpd_peer_prefixes_advertised{peer=\"10.0.0.2\",name=\"Mesh_10.0.0.2\"} 3".into(),
            "bgpd_peer_prefixes_advertised{peer=\"10.0.0.3\",name=\"Mesh_10.0.0.3\"} 7".into(),
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        let text = scrape().await;
        assert!(!text.contains("10.0.0.2"), "{text}");
        assert!(
            text.contains("bgpd_peer_prefixes_received{peer=\"10.0.0.3\",name=\"Mesh_10.0.0.3\"} 1"),
            "{text}"
        );
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
