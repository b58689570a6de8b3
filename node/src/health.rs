//! Liveness and readiness over plain HTTP (`/livez`, `/readyz`), for the
//! DaemonSet's probes and for the lab, and `/metrics` (see
//! [`crate::metrics`]) on the same address, where the DaemonSet's
//! Prometheus annotations point.
//!
//! Live: both supervised processes are running. Ready: bgpd answers on its
//! control socket and every configured peer is Established, which is the
//! condition Calico's readiness probe reports as "BGP not established
//! with ...".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use margay_ctlproto::PeerStatus;
use margay_ctlproto::client;
use margay_httpd::{Router, StatusCode};
use tokio::net::TcpListener;

use crate::metrics::{self, AgentFacts, ChildFacts, Scrape};
use crate::supervise::ChildState;

/// What the probes look at.
#[derive(Debug, Clone)]
pub struct HealthCxt {
    pub children: Vec<(&'static str, Arc<ChildState>)>,
    pub bgpd_socket: PathBuf,
    /// The children's own metrics endpoints, merged into `/metrics`.
    pub metrics_targets: Vec<(&'static str, SocketAddr)>,
}

/// A probe's verdict: HTTP status and a one-line body.
pub type Verdict = (u16, String);

/// `/livez`.
pub fn liveness(cxt: &HealthCxt) -> Verdict {
    let down: Vec<&str> = cxt
        .children
        .iter()
        .filter(|(_, s)| !s.running.load(Ordering::Relaxed))
        .map(|(n, _)| *n)
        .collect();
    if down.is_empty() {
        (200, "ok".into())
    } else {
        (503, format!("not running: {}", down.join(", ")))
    }
}

/// The readiness verdict for a peer table.
pub fn readiness_of(peers: &[PeerStatus]) -> Verdict {
    let down: Vec<String> = peers
        .iter()
        .filter(|p| p.state != "Established")
        .map(|p| format!("{} ({})", p.address, p.state))
        .collect();
    if down.is_empty() {
        (200, format!("ok: {} peers established", peers.len()))
    } else {
        (503, format!("BGP not established with {}", down.join(", ")))
    }
}

/// `/readyz`.
pub async fn readiness(cxt: &HealthCxt) -> Verdict {
    match query_peers(&cxt.bgpd_socket).await {
        Ok(peers) => readiness_of(&peers),
        Err(e) => (503, format!("bgpd not ready: {e}")),
    }
}

/// `/metrics`: the agent's families, then each child's endpoint.
pub async fn metrics_text(cxt: &HealthCxt) -> String {
    let children = cxt
        .children
        .iter()
        .map(|(name, s)| ChildFacts {
            name: name.to_string(),
            running: s.running.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
        })
        .collect();
    let facts = AgentFacts {
        children,
        peers: query_peers(&cxt.bgpd_socket).await,
    };
    let mut scrapes = Vec::new();
    for (target, addr) in &cxt.metrics_targets {
        scrapes.push(Scrape {
            target: target.to_string(),
            body: metrics::scrape(*addr, Duration::from_secs(2)).await,
        });
    }
    metrics::merge(&metrics::render_agent(&facts, &scrapes), &scrapes)
}

/// Asks bgpd for its peer table (the blocking client, off the runtime).
pub async fn query_peers(socket: &Path) -> Result<Vec<PeerStatus>, String> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || client::peers(&socket))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// A probe's verdict as an HTTP answer.
fn answer((code, body): Verdict) -> margay_httpd::Response {
    let code =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    margay_httpd::text_response(code, body)
}

/// The routes: `/livez`, `/readyz`, `/metrics`; anything else is a 404
/// that names them.
pub fn router(cxt: HealthCxt) -> Router {
    let cxt = Arc::new(cxt);
    let (live, ready, metrics) = (cxt.clone(), cxt.clone(), cxt);
    Router::new()
        .route(
            "/livez",
            margay_httpd::routing::get(move || async move {
                answer(liveness(&live))
            }),
        )
        .route(
            "/readyz",
            margay_httpd::routing::get(move || async move {
                answer(readiness(&ready).await)
            }),
        )
        .route(
            "/metrics",
            margay_httpd::routing::get(move || async move {
                margay_httpd::metrics_response(metrics_text(&metrics).await)
            }),
        )
        .fallback(|| async {
            answer((404, "try /livez, /readyz or /metrics".into()))
        })
}

/// Serves the probes until the task is dropped.
pub async fn serve(listener: TcpListener, cxt: HealthCxt) {
    if let Err(e) = margay_httpd::serve(listener, router(cxt)).await {
        tracing::error!(error = %e, "health endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn ready_only_when_every_peer_is_established() {
        let ok = [peer("10.0.0.2", "Established")];
        assert_eq!(readiness_of(&ok).0, 200);
        let mixed =
            [peer("10.0.0.2", "Established"), peer("10.0.0.3", "Active")];
        let (code, body) = readiness_of(&mixed);
        assert_eq!(code, 503);
        assert_eq!(body, "BGP not established with 10.0.0.3 (Active)");
    }

    #[test]
    fn live_only_when_children_run() {
        let a = Arc::new(ChildState::default());
        let cxt = HealthCxt {
            children: vec![("bgpd", a.clone())],
            bgpd_socket: "/nonexistent".into(),
            metrics_targets: vec![],
        };
        assert_eq!(liveness(&cxt), (503, "not running: bgpd".into()));
        a.running.store(true, Ordering::Relaxed);
        assert_eq!(liveness(&cxt).0, 200);
    }

    #[tokio::test]
    async fn readiness_reports_a_missing_socket() {
        let cxt = HealthCxt {
            children: vec![],
            bgpd_socket: "/nonexistent/bgpd.ctl".into(),
            metrics_targets: vec![],
        };
        let (code, body) = readiness(&cxt).await;
        assert_eq!(code, 503);
        assert!(body.contains("/nonexistent/bgpd.ctl"), "{body}");
    }

    /// `/livez` and `/readyz` answer with their verdicts as status and
    /// body; an unknown path is a 404 naming the routes.
    #[tokio::test]
    async fn probe_routes_answer_with_their_verdicts() {
        let a = Arc::new(ChildState::default());
        a.running.store(true, Ordering::Relaxed);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(
            l,
            HealthCxt {
                children: vec![("bgpd", a)],
                bgpd_socket: "/nonexistent/bgpd.ctl".into(),
                metrics_targets: vec![],
            },
        ));
        let fetch = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).await.unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            (head.lines().next().unwrap().to_string(), body.to_string())
        };
        assert_eq!(
            fetch("/livez").await,
            ("HTTP/1.1 200 OK".into(), "ok\n".into())
        );
        let (status, body) = fetch("/readyz").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert!(body.starts_with("bgpd not ready: "), "{body}");
        assert!(body.contains("/nonexistent/bgpd.ctl"), "{body}");
        assert_eq!(
            fetch("/other").await,
            (
                "HTTP/1.1 404 Not Found".into(),
                "try /livez, /readyz or /metrics\n".into()
            )
        );
    }

    #[tokio::test]
    async fn metrics_route_merges_a_child_endpoint() {
        // A stand-in for bgpd's --metrics-addr.
        let child = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let child_addr = child.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = child.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let body =
                "# TYPE bgpd_rib_prefixes gauge\nbgpd_rib_prefixes 7\n# EOF\n";
            let resp = format!("HTTP/1.1 200 OK\r\n\r\n{body}");
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let a = Arc::new(ChildState::default());
        a.running.store(true, Ordering::Relaxed);
        a.restarts.store(1, Ordering::Relaxed);
        let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_addr = health.local_addr().unwrap();
        tokio::spawn(serve(
            health,
            HealthCxt {
                children: vec![("bgpd", a)],
                bgpd_socket: "/nonexistent/bgpd.ctl".into(),
                metrics_targets: vec![("bgpd", child_addr)],
            },
        ));
        let mut s = tokio::net::TcpStream::connect(health_addr).await.unwrap();
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        // Header names are case-insensitive (RFC 9110 section 5.1).
        let lower = raw.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/openmetrics-text"),
            "{raw}"
        );
        for want in [
            "margay_node_child_up{child=\"bgpd\"} 1",
            "margay_node_child_restarts_total{child=\"bgpd\"} 1",
            "margay_node_bgpd_control_up 0",
            "margay_node_scrape_up{target=\"bgpd\"} 1",
            "bgpd_rib_prefixes 7",
        ] {
            assert!(raw.lines().any(|l| l == want), "{want:?} in\n{raw}");
        }
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"));
    }
}
