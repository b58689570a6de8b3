//! kube-fake-client (an in-memory apiserver behind `kube::Client`) for
//! margay's cluster-scoped resources.
//!
//! kube-fake-client 0.3 registers every custom resource as namespaced
//! (registry.rs `is_namespaced_resource` always returns true), so it
//! refuses cluster-scoped requests. [`cluster_scoped`] puts a small tower
//! service in front of it that rewrites the cluster-scoped paths a backend
//! sends (`/apis/G/V/PLURAL/...`) into one namespace; the code under test
//! is unchanged.

use kube::client::Body;

/// The namespace the path rewriting puts every object in.
pub const FAKE_NS: &str = "margay-test";

/// A client that sends through `fake` (built by kube-fake-client's
/// `ClientBuilder`) with cluster-scoped paths moved into [`FAKE_NS`].
pub fn cluster_scoped(fake: kube::Client) -> kube::Client {
    let svc = tower::service_fn(move |mut req: http::Request<Body>| {
        let fake = fake.clone();
        async move {
            *req.uri_mut() = namespaced(req.uri());
            fake.send(req).await
        }
    });
    kube::Client::new(svc, FAKE_NS)
}

/// A client whose every request `answer` answers with a status code and
/// a JSON body, for the apiserver behaviours kube-fake-client cannot show
/// (e.g. a 403 on watch).
pub fn answering<F>(answer: F) -> kube::Client
where
    F: Fn(&http::Request<Body>) -> (u16, String) + Send + Sync + 'static,
{
    let answer = std::sync::Arc::new(answer);
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let (status, body) = answer(&req);
        async move {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body.into_bytes()))
        }
    });
    kube::Client::new(svc, FAKE_NS)
}

/// `/apis/G/V/rest` -> `/apis/G/V/namespaces/FAKE_NS/rest`.
fn namespaced(uri: &http::Uri) -> http::Uri {
    let path = uri.path();
    let parts: Vec<&str> = path.splitn(5, '/').collect();
    let new_path = match parts.as_slice() {
        ["", "apis", group, version, rest] => {
            format!("/apis/{group}/{version}/namespaces/{FAKE_NS}/{rest}")
        }
        _ => path.to_string(),
    };
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    http::Uri::builder()
        .path_and_query(pq)
        .build()
        .expect("valid rewritten URI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_scoped_paths_move_into_the_fake_namespace() {
        let u: http::Uri = "/apis/margay.io/v1/ippools/p1?x=1".parse().unwrap();
        assert_eq!(
            namespaced(&u).to_string(),
            "/apis/margay.io/v1/namespaces/margay-test/ippools/p1?x=1"
        );
        let core: http::Uri = "/api/v1/namespaces/a/secrets/s".parse().unwrap();
        assert_eq!(namespaced(&core), core);
    }
}
