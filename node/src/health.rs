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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Serves the probes until the task is dropped.
pub async fn serve(listener: TcpListener, cxt: HealthCxt) {
    let cxt = Arc::new(cxt);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let cxt = cxt.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                Duration::from_secs(2),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let mut content_type = "text/plain";
            let (code, body) = match path {
                "/livez" => liveness(&cxt),
                "/readyz" => readiness(&cxt).await,
                "/metrics" => {
                    content_type = metrics::CONTENT_TYPE;
                    (200, metrics_text(&cxt).await)
                }
                _ => (404, "try /livez, /readyz or /metrics".into()),
            };
            // The probes' one-line bodies get a newline; the exposition
            // already ends with one.
            let body = if body.ends_with('\n') {
                body
            } else {
                body + "\n"
            };
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let resp = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;

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
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(raw.contains("Content-Type: application/openmetrics-text"));
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
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.ends_with("# EOF\n"));
    }
}
