//! The one HTTP server and the one HTTP client of margay's daemons.
//!
//! bgpd and felix-lite serve `/metrics`; margay-node serves `/livez`,
//! `/readyz` and `/metrics`, the last merged from its own families and
//! the children's endpoints, which it fetches with [`get`]. They are all
//! plain HTTP/1.1 on a loopback or pod address, so this crate is a thin
//! layer over axum (server) and hyper-util (client), both already in the
//! build through kube and tonic: what a hand-written parser got wrong
//! (partial reads, pipelining, `Content-Length` on errors, slow clients)
//! is theirs to get right.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use axum::Router;
pub use axum::http::StatusCode;
use axum::response::IntoResponse;
pub use axum::response::Response;
pub use axum::routing;
use axum::routing::get as get_route;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The content type of an OpenMetrics text exposition (OpenMetrics 1.0,
/// "Protocol Negotiation"), which is what prometheus-client encodes.
pub const OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A 200 answer carrying an OpenMetrics exposition.
pub fn metrics_response(body: String) -> Response {
    ([(http::header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
}

/// A plain-text answer, as the probes give: `code` and a body that ends
/// with a newline.
pub fn text_response(code: StatusCode, mut body: String) -> Response {
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (code, [(http::header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// A router with one route, `GET /metrics`, answered with what `render`
/// returns at request time (bgpd's and felix-lite's endpoints).
pub fn metrics_router<F, Fut>(render: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    Router::new().route(
        "/metrics",
        get_route(move || {
            let render = render.clone();
            async move { metrics_response(render().await) }
        }),
    )
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Binds `addr` and serves `router` on it.
pub async fn bind_and_serve(
    addr: SocketAddr,
    router: Router,
) -> std::io::Result<()> {
    serve(TcpListener::bind(addr).await?, router).await
}

/// Encodes a registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The label of a `*_build_info` gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
}

/// Registers `<prefix>_build_info{version="..."} 1`, the Prometheus
/// convention for telling which build runs (Calico's daemons export
/// `felix_build_info` and `kube_controllers_build_info` likewise).
/// `registry` may carry a prefix of its own; `name` is added to it.
pub fn register_build_info(registry: &mut Registry, name: &str, version: &str) {
    let family = Family::<BuildLabel, Gauge>::default();
    family
        .get_or_create(&BuildLabel {
            version: version.to_string(),
        })
        .set(1);
    registry.register(
        name,
        "Which build runs: 1, labelled with its version",
        family,
    );
}

/// Why [`get`] found no body.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{url}: not a URI: {source}")]
    Uri {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url}: reading the body: {source}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: status {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// `GET http://addr/path`: the body of a 200 answer, within `timeout`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, GetError> {
    let url = format!("http://{addr}{path}");
    let fetch = async {
        let client =
            Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri: http::Uri = url.parse().map_err(|source| GetError::Uri {
            url: url.clone(),
            source,
        })?;
        let resp =
            client.get(uri).await.map_err(|source| GetError::Request {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(GetError::Status {
                url: url.clone(),
                status,
            });
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|source| GetError::Body {
                url: url.clone(),
                source,
            })?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        GetError::Timeout {
            url: url.clone(),
            timeout,
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn spawn(router: Router) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, router));
        addr
    }

    /// The server answers `/metrics` with the OpenMetrics content type
    /// and the client reads the body back; other paths are 404.
    #[tokio::test]
    async fn metrics_round_trip_and_404() {
        let addr =
            spawn(metrics_router(|| async { "m 1\n# EOF\n".to_string() }))
                .await;
        let body = get(addr, "/metrics", Duration::from_secs(5)).await.unwrap();
        assert_eq!(body, "m 1\n# EOF\n");
        let e = get(addr, "/nope", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, GetError::Status { status, .. } if status == 404),
            "{e}"
        );
    }

    /// The content type and length are what Prometheus expects; a
    /// request without `Host` (the lab's inspector sends none) is served.
    #[tokio::test]
    async fn headers_name_openmetrics() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr =
            spawn(metrics_router(|| async { "m 1\n# EOF\n".to_string() }))
                .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let head = raw.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase();
        assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
        assert!(
            head.contains(&format!("content-type: {OPENMETRICS}")),
            "{raw}"
        );
        assert!(head.contains("content-length: 10"), "{raw}");
    }

    /// A server that never answers costs the caller `timeout`, not a hang.
    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Accept and hold the connection without answering.
        let hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let e = get(addr, "/metrics", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, GetError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        hold.abort();
    }

    /// A refused connection is an error naming the address.
    #[tokio::test]
    async fn a_closed_port_is_an_error_naming_it() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = get(addr, "/metrics", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, GetError::Request { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    #[test]
    fn build_info_is_one_gauge_labelled_with_the_version() {
        let mut reg = Registry::with_prefix("x");
        register_build_info(&mut reg, "build_info", "1.2.3");
        let text = encode(&reg);
        assert!(text.contains("# TYPE x_build_info gauge"), "{text}");
        assert!(
            text.lines()
                .any(|l| l == "x_build_info{version=\"1.2.3\"} 1"),
            "{text}"
        );
    }
}
