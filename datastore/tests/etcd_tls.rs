//! etcd with mutual TLS (`--client-cert-auth`, certificates made by the
//! test): the client with the right files works through the conformance
//! subset, a client without a certificate or trusting the wrong CA is
//! refused with an error that says so.

mod conformance;

use conformance::{Widget, widget};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::{EtcdServer, EtcdTlsFiles};

fn start() -> EtcdServer {
    EtcdServer::start_tls().unwrap_or_else(|e| {
        panic!("cannot start etcd with TLS ({e}): scripts/deps installs etcd and openssl")
    })
}

/// `--datastore` for `server` with these files.
fn spec(
    server: &EtcdServer,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> DatastoreSpec {
    let mut text =
        format!("etcd:{}?ca_cert_file={}", server.endpoint(), ca.display());
    if let Some((cert, key)) = client {
        text += &format!(
            "&cert_file={}&key_file={}",
            cert.display(),
            key.display()
        );
    }
    text.parse().unwrap()
}

async fn good_client(server: &EtcdServer) -> Datastore {
    let f: &EtcdTlsFiles = server.tls_files().unwrap();
    let spec = spec(server, &f.ca, Some((&f.client_cert, &f.client_key)));
    Datastore::connect(&spec).await.unwrap()
}

macro_rules! conformance_over_tls {
    ($name:ident $(, $arg:expr)*) => {
        #[tokio::test]
        async fn $name() {
            let server = start();
            let ds = good_client(&server).await;
            conformance::$name(&ds $(, $arg)*).await;
        }
    };
}

conformance_over_tls!(create_sets_metadata);
conformance_over_tls!(update_is_compare_and_swap);
conformance_over_tls!(watch_orders_and_resumes);
conformance_over_tls!(read_batch_answers_each_slot);

/// The first request's error of a client built from `spec`.
async fn refused(spec: &DatastoreSpec) -> String {
    let ds = Datastore::connect(spec).await.unwrap();
    let err = ds.create(&widget("a", 1)).await.unwrap_err();
    format!("{err:#}")
}

/// With TLS 1.3 etcd refuses a client certificate after the client's
/// side of the handshake is done, so the client sees either etcd's alert
/// (then the error says what it means) or only the connection closing.
/// Either way the request fails as `unavailable`.
fn assert_refused_client(err: &str) {
    assert!(err.contains("the etcd datastore is unavailable"), "{err}");
    if err.contains("alert") {
        assert!(
            err.contains(
                "TLS with etcd failed: etcd rejected the client \
                 certificate (TLS alert"
            ),
            "{err}"
        );
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let server = start();
    let f = server.tls_files().unwrap();
    let err = refused(&spec(&server, &f.ca, None)).await;
    assert_refused_client(&err);
    // The good client is served by the same etcd.
    let ds = good_client(&server).await;
    ds.create(&widget("a", 1)).await.unwrap();
    assert!(ds.get::<Widget>("a").await.unwrap().is_some());
}

#[tokio::test]
async fn wrong_ca_is_refused_both_ways() {
    let server = start();
    let f = server.tls_files().unwrap();
    // The client does not trust etcd's server certificate.
    let err = refused(&spec(
        &server,
        &f.other_ca,
        Some((&f.client_cert, &f.client_key)),
    ))
    .await;
    assert!(
        err.contains(
            "etcd's server certificate is not trusted (UnknownIssuer): is \
             ca_cert_file the CA that signed it?"
        ),
        "{err}"
    );
    // etcd does not trust the client's certificate.
    let err = refused(&spec(
        &server,
        &f.ca,
        Some((&f.other_client_cert, &f.other_client_key)),
    ))
    .await;
    assert_refused_client(&err);
    let ds = good_client(&server).await;
    assert_eq!(ds.get::<Widget>("a").await.unwrap(), None);
}

#[tokio::test]
async fn unreadable_file_is_named() {
    let spec: DatastoreSpec =
        "etcd:https://127.0.0.1:1?ca_cert_file=/nonexistent/ca.pem"
            .parse()
            .unwrap();
    let err = Datastore::connect(&spec).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("etcd ca_cert_file /nonexistent/ca.pem: cannot read it"),
        "{err}"
    );
}
