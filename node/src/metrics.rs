//! `/metrics` on the agent's health address: one scrape target per node.
//!
//! The DaemonSet annotates the pod for Prometheus on the health port, so
//! the agent answers there with (1) its own view, rendered here from the
//! supervisor's state and bgpd's peer table (control socket), followed by
//! (2) the metrics of bgpd and felix-lite, fetched from their loopback
//! `--metrics-addr` endpoints at request time and passed through verbatim.
//!
//! Passing through instead of re-parsing is honest because the metric
//! families cannot collide (`margay_node_*`, `bgpd_*`, `felix_lite_*`); the
//! only edit is dropping each child's `# EOF` line, since an OpenMetrics
//! exposition has exactly one, at the end (OpenMetrics 1.0, "Overall
//! Structure"). A child that does not answer costs nothing but its section:
//! `margay_node_scrape_up{target=..} 0` says so.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use margay_ctlproto::PeerStatus;

/// A supervised process as the metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFacts {
    pub name: String,
    pub running: bool,
    pub restarts: u32,
}

/// Everything the agent's own section is rendered from.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub children: Vec<ChildFacts>,
    /// bgpd's peer table, or why the control socket did not answer.
    pub peers: Result<Vec<PeerStatus>, String>,
}

/// The outcome of scraping one child's endpoint.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub target: String,
    pub body: Result<String, String>,
}

/// Escapes a label value (OpenMetrics: backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The agent's own metric families, without `# EOF`.
pub fn render_agent(facts: &AgentFacts, scrapes: &[Scrape]) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "margay_node_build_info",
        "gauge",
        "Which build runs: 1, labelled with its version.",
    );
    let _ = writeln!(
        o,
        "margay_node_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    family(
        &mut o,
        "margay_node_child_up",
        "gauge",
        "Whether the supervised process is running.",
    );
    for c in &facts.children {
        let _ = writeln!(
            o,
            "margay_node_child_up{{child=\"{}\"}} {}",
            label(&c.name),
            u8::from(c.running)
        );
    }
    // OpenMetrics counters: the family has no suffix, samples end _total.
    family(
        &mut o,
        "margay_node_child_restarts",
        "counter",
        "Times the supervised process exited and was started again.",
    );
    for c in &facts.children {
        let _ = writeln!(
            o,
            "margay_node_child_restarts_total{{child=\"{}\"}} {}",
            label(&c.name),
            c.restarts
        );
    }
    family(
        &mut o,
        "margay_node_bgpd_control_up",
        "gauge",
        "Whether bgpd answered on its control socket.",
    );
    let _ = writeln!(
        o,
        "margay_node_bgpd_control_up {}",
        u8::from(facts.peers.is_ok())
    );
    if let Ok(peers) = &facts.peers {
        family(
            &mut o,
            "margay_node_bgp_sessions_established",
            "gauge",
            "BGP sessions in state Established.",
        );
        let up = peers.iter().filter(|p| p.state == "Established").count();
        let _ = writeln!(o, "margay_node_bgp_sessions_established {up}");
        family(
            &mut o,
            "margay_node_bgp_peer_established",
            "gauge",
            "Per configured peer: 1 when its session is Established.",
        );
        for p in peers {
            let _ = writeln!(
                o,
                "margay_node_bgp_peer_established{{peer=\"{}\",type=\"{}\"}} {}",
                p.address,
                label(p.peer_type.describe()),
                u8::from(p.state == "Established")
            );
        }
    }
    family(
        &mut o,
        "margay_node_scrape_up",
        "gauge",
        "Whether the child's metrics endpoint answered this scrape.",
    );
    for s in scrapes {
        let _ = writeln!(
            o,
            "margay_node_scrape_up{{target=\"{}\"}} {}",
            label(&s.target),
            u8::from(s.body.is_ok())
        );
    }
    o
}

/// The whole exposition: the agent's section, every child that answered,
/// and the single terminating `# EOF`.
pub fn merge(agent: &str, scrapes: &[Scrape]) -> String {
    let mut out = String::from(agent);
    for s in scrapes {
        let Ok(body) = &s.body else { continue };
        for line in body.lines().filter(|l| l.trim() != "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// `GET /metrics` from a child's endpoint: the body of a 200 answer.
pub async fn scrape(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<String, String> {
    margay_httpd::get(addr, "/metrics", timeout)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn facts(peers: Result<Vec<PeerStatus>, String>) -> AgentFacts {
        AgentFacts {
            children: vec![
                ChildFacts {
                    name: "bgpd".into(),
                    running: true,
                    restarts: 2,
                },
                ChildFacts {
                    name: "felix-lite".into(),
                    running: false,
                    restarts: 0,
                },
            ],
            peers,
        }
    }

    #[test]
    fn renders_children_sessions_and_scrape_outcomes() {
        let peers =
            vec![peer("10.0.0.2", "Established"), peer("10.0.0.3", "Active")];
        let scrapes = [
            Scrape {
                target: "bgpd".into(),
                body: Ok("bgpd_rib_prefixes 4\n# EOF\n".into()),
            },
            Scrape {
                target: "felix-lite".into(),
                body: Err("connect refused".into()),
            },
        ];
        let text = merge(&render_agent(&facts(Ok(peers)), &scrapes), &scrapes);
        for want in [
            "# TYPE margay_node_child_up gauge",
            "# TYPE margay_node_build_info gauge",
            "margay_node_child_up{child=\"bgpd\"} 1",
            "margay_node_child_up{child=\"felix-lite\"} 0",
            "# TYPE margay_node_child_restarts counter",
            "margay_node_child_restarts_total{child=\"bgpd\"} 2",
            "margay_node_bgpd_control_up 1",
            "margay_node_bgp_sessions_established 1",
            "margay_node_bgp_peer_established{peer=\"10.0.0.3\",type=\"node-to-node mesh\"} 0",
            "margay_node_scrape_up{target=\"bgpd\"} 1",
            "margay_node_scrape_up{target=\"felix-lite\"} 0",
            "bgpd_rib_prefixes 4",
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
        }
        let build = format!(
            "margay_node_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{build:?} in\n{text}");
        // Exactly one EOF, and last.
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_dead_control_socket_drops_session_families() {
        let text = render_agent(&facts(Err("no socket".into())), &[]);
        assert!(text.contains("margay_node_bgpd_control_up 0"), "{text}");
        assert!(!text.contains("margay_node_bgp_sessions_established"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[tokio::test]
    async fn scrape_reads_a_child_endpoint_and_reports_a_dead_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let body = "felix_lite_dumps_total 3\n# EOF\n";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let got = scrape(addr, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got, "felix_lite_dumps_total 3\n# EOF\n");
        // The listener is gone now: a refused connection is an error.
        let err = scrape(addr, Duration::from_secs(2)).await.unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
    }
}
