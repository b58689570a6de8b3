//! What margay relies on from its YAML crate (serde_norway, behind the
//! `serde_yaml` name; see the workspace Cargo.toml): a multi-document
//! stream yields each document in turn, and a `deny_unknown_fields` error
//! names the field, the fields allowed, and the line and column in the
//! whole stream. `margayctl apply`/`import` and `parse_documents` build
//! their messages on these, so a YAML crate that lost them would turn
//! "line 9: unknown field `blockSzie`" into a bare "invalid type".

use margay_crds::IPPool;
use serde::Deserialize;

const STREAM: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: good
spec:
  cidr: 10.0.0.0/16
---
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: bad
spec:
  cidr: 10.1.0.0/16
  blockSzie: 24
";

#[test]
fn a_stream_yields_each_document_and_the_error_names_line_and_field() {
    let results: Vec<Result<IPPool, serde_yaml::Error>> =
        serde_yaml::Deserializer::from_str(STREAM)
            .map(IPPool::deserialize)
            .collect();
    assert_eq!(results.len(), 2, "two documents");
    let good = results[0].as_ref().expect("first document parses");
    assert_eq!(good.metadata.name.as_deref(), Some("good"));

    let e = results[1].as_ref().expect_err("unknown field refused");
    let msg = e.to_string();
    assert!(msg.contains("unknown field `blockSzie`"), "{msg}");
    assert!(msg.contains("expected one of"), "{msg}");
    // Line 14 of the stream, not of the second document: positions count
    // from the start of the input.
    let loc = e.location().expect("the error has a location");
    assert_eq!((loc.line(), loc.column()), (14, 3), "{msg}");
    assert!(msg.ends_with("at line 14 column 3"), "{msg}");
}

#[test]
fn a_nested_unknown_field_is_named_with_its_path() {
    let e = margay_crds::parse_documents(STREAM)
        .expect_err("must fail")
        .to_string();
    assert!(
        e.starts_with(
            "document 2 (line 7): IPPool \"bad\": spec: unknown field \
             `blockSzie`"
        ),
        "{e}"
    );
    assert!(e.ends_with("at line 14 column 3"), "{e}");
}
