//! `parse_documents`: apiVersion and kind checks, unknown fields, empty
//! documents, and error positions.

use margay_crds::{AnyResource, DocumentError, parse_documents};

fn err(yaml: &str) -> String {
    parse_documents(yaml).expect_err("must fail").to_string()
}

#[test]
fn skips_empty_documents_and_keeps_order() {
    let yaml = "---\n# only a comment\n---\napiVersion: margay.io/v1\nkind: \
                Node\nmetadata:\n  name: n1\nspec: {}\n---\n---\napiVersion: \
                margay.io/v1\nkind: IPAMConfig\nmetadata:\n  name: default\n\
                spec:\n  maxBlocksPerHost: 0\n...\n";
    let docs = parse_documents(yaml).unwrap();
    let ids: Vec<(&str, &str)> =
        docs.iter().map(|d| (d.kind(), d.name())).collect();
    assert_eq!(ids, [("Node", "n1"), ("IPAMConfig", "default")]);
    let AnyResource::IPAMConfig(c) = &docs[1] else {
        panic!("kind")
    };
    assert_eq!(c.spec.max_blocks_per_host(), 20);
    assert!(c.spec.auto_allocate_blocks);
    assert!(!c.spec.strict_affinity);
}

#[test]
fn wrong_api_version_says_what_is_allowed() {
    let yaml = "apiVersion: margay.io/v1\nkind: Node\nmetadata: {name: a}\n\
                spec: {}\n---\napiVersion: projectcalico.org/v3\nkind: \
                IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n";
    assert_eq!(
        err(yaml),
        "document 2 (line 5): apiVersion \"projectcalico.org/v3\" is not \
         supported; allowed \"margay.io/v1\""
    );
    assert_eq!(
        err("kind: Node\nmetadata: {name: a}\n"),
        "document 1 (line 1): missing apiVersion (allowed \"margay.io/v1\")"
    );
    assert_eq!(
        err("apiVersion: margay.io/v1\nmetadata: {name: a}\n"),
        "document 1 (line 1): missing kind (allowed IPPool, BGPPeer, \
         BGPConfiguration, BGPFilter, Node, IPAMBlock, BlockAffinity, \
         IPAMHandle, IPAMConfig, IPReservation)"
    );
}

#[test]
fn unknown_kind_lists_kinds() {
    assert_eq!(
        err("apiVersion: margay.io/v1\nkind: FelixConfiguration\n"),
        "document 1 (line 1): kind \"FelixConfiguration\" is not supported; \
         allowed IPPool, BGPPeer, BGPConfiguration, BGPFilter, Node, \
         IPAMBlock, BlockAffinity, IPAMHandle, IPAMConfig, IPReservation"
    );
}

#[test]
fn unknown_fields_name_document_kind_name_and_field() {
    let yaml = "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: \
                p1\nspec:\n  cidr: 10.0.0.0/16\n---\napiVersion: \
                margay.io/v1\nkind: IPPool\nmetadata:\n  name: p2\nspec:\n  \
                cidr: 10.1.0.0/16\n  blockSzie: 24\n";
    let e = err(yaml);
    assert!(
        e.starts_with(
            "document 2 (line 7): IPPool \"p2\": spec: unknown field \
             `blockSzie`, expected one of"
        ),
        "{e}"
    );
    assert!(e.ends_with("at line 14 column 3"), "{e}");

    let nested = "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: \
                  tor\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 65001\n  \
                  password:\n    fle: /etc/pw\n";
    let e = err(nested);
    assert!(
        e.starts_with(
            "document 1 (line 1): BGPPeer \"tor\": spec.password: unknown \
             field `fle`, expected one of `secretKeyRef`, `file`, `value`"
        ),
        "{e}"
    );

    assert_eq!(
        err(
            "apiVersion: margay.io/v1\nkind: Node\nmetadata:\n  name: n1\n  \
             lables: {a: b}\nspec: {}\n"
        ),
        "document 1 (line 1): Node \"n1\": unknown field `metadata.lables`, \
         expected one of `annotations`, `creationTimestamp`, \
         `deletionGracePeriodSeconds`, `deletionTimestamp`, `finalizers`, \
         `generateName`, `generation`, `labels`, `managedFields`, `name`, \
         `namespace`, `ownerReferences`, `resourceVersion`, `selfLink`, `uid`"
    );
    assert_eq!(
        err(
            "apiVersion: margay.io/v1\nkind: Node\nmetadata:\n  name: n1\n\
             spec: {}\nstatus: {}\n"
        ),
        "document 1 (line 1): Node \"n1\": unknown field `status`, expected \
         one of `apiVersion`, `kind`, `metadata`, `spec`"
    );
}

#[test]
fn missing_name_and_bad_yaml() {
    assert_eq!(
        err("apiVersion: margay.io/v1\nkind: Node\nspec: {}\n"),
        "document 1 (line 1): Node \"\": metadata.name is missing: allowed a \
         name such as \"default\""
    );
    let e = parse_documents("apiVersion: margay.io/v1\nkind: [unclosed\n")
        .unwrap_err();
    assert!(
        matches!(
            e,
            DocumentError::Yaml {
                document: 1,
                line: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        err("- just\n- a list\n"),
        "document 1 (line 1): expected a mapping with apiVersion, kind, \
         metadata and spec"
    );
}

#[test]
fn ipam_objects_use_calico_json() {
    let yaml = "apiVersion: margay.io/v1\nkind: IPAMBlock\nmetadata:\n  name: \
                10-42-117-0-30\nspec:\n  cidr: 10.42.117.0/30\n  affinity: \
                host:node-1\n  strictAffinity: false\n  allocations: [0, null, \
                null, null]\n  unallocated: [1, 2, 3]\n  attributes:\n    - \
                handle_id: k8s-pod-network.abc\n      secondary:\n        \
                namespace: default\n        pod: web-0\n  deleted: false\n  \
                sequenceNumber: 7\n  sequenceNumberForAllocation:\n    '0': \
                6\n---\napiVersion: margay.io/v1\nkind: BlockAffinity\n\
                metadata:\n  name: node-1-10-42-117-0-30\nspec:\n  state: \
                pendingDeletion\n  node: node-1\n  type: host\n  cidr: \
                10.42.117.0/30\n  deleted: false\n";
    let docs = parse_documents(yaml).unwrap();
    margay_crds::validate_set(&docs).unwrap();
    let AnyResource::IPAMBlock(b) = &docs[0] else {
        panic!("kind")
    };
    assert_eq!(b.spec.affine_host(), Some("node-1"));
    assert_eq!(b.spec.allocations, [Some(0), None, None, None]);
    let json = docs[0].to_json().unwrap();
    assert_eq!(
        json["spec"]["attributes"][0]["handle_id"],
        "k8s-pod-network.abc"
    );
    assert_eq!(json["spec"]["allocations"][1], serde_json::Value::Null);
    let json = docs[1].to_json().unwrap();
    assert_eq!(json["spec"]["state"], "pendingDeletion");
    assert_eq!(
        margay_crds::block_name(&b.spec.cidr_net().unwrap()),
        "10-42-117-0-30"
    );
}

#[test]
fn as_numbers_accept_asdot_strings() {
    let yaml = "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: \
                tor\nspec:\n  peerIP: 192.0.2.1\n  asNumber: '1.10'\n  \
                localASNumber: '64512'\n";
    let docs = parse_documents(yaml).unwrap();
    let AnyResource::BGPPeer(p) = &docs[0] else {
        panic!("kind")
    };
    assert_eq!(p.spec.as_number, Some(65546));
    assert_eq!(p.spec.local_as_number, Some(64512));
    // Written back as plain numbers.
    assert_eq!(docs[0].to_json().unwrap()["spec"]["asNumber"], 65546);

    let e = err(&yaml.replace("'1.10'", "'1.x'"));
    assert!(
        e.starts_with(
            "document 1 (line 1): BGPPeer \"tor\": spec: asNumber: invalid \
             AS number \"1.x\": allowed 0-4294967295 as a number, or a \
             quoted asplain/asdot string such as \"64512\" or \"1.10\""
        ),
        "{e}"
    );
    let e = err(&yaml.replace("'1.10'", "4294967296"));
    assert!(e.contains("invalid AS number 4294967296"), "{e}");
}
