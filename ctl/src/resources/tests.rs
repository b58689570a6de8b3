//! Unit tests for kinds, tables and apply's change detection.
use super::*;

#[test]
fn kind_aliases_are_unique_and_parse() {
    let mut seen = std::collections::BTreeSet::new();
    for k in Kind::ALL {
        for n in k.names() {
            assert!(seen.insert(*n), "alias {n} used twice");
            assert_eq!(Kind::parse(n).unwrap(), k);
        }
        assert_eq!(Kind::parse(k.as_str()).unwrap(), k);
    }
    assert_eq!(Kind::parse("IPPOOLS").unwrap(), Kind::IPPool);
    assert_eq!(Kind::parse("bgpconfig").unwrap(), Kind::BGPConfiguration);
    let err = Kind::parse("ippol").unwrap_err().to_string();
    assert!(err.contains("\"ippol\""), "{err}");
    assert!(err.contains("ippool/ippools"), "{err}");
}

/// `margayctl get` takes the short names `kubectl get` takes.
#[test]
fn crd_short_names_are_kind_aliases() {
    for crd in margay_crds::crd::all_crds() {
        let kind = Kind::parse(&crd.spec.names.kind).unwrap();
        for short in crd.spec.names.short_names.iter().flatten() {
            assert_eq!(Kind::parse(short).unwrap(), kind, "{short}");
        }
    }
}

#[test]
fn table_has_name_columns_and_age() {
    let pool: IPPool = serde_yaml::from_str(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: default\n  \
         creationTimestamp: \"2026-01-01T00:00:00Z\"\nspec:\n  cidr: 10.244.0.0/16\n",
    )
    .unwrap();
    let now = jiff::Timestamp::from_second(1_767_225_600 + 300)
        .unwrap()
        .as_second();
    assert_eq!(
        render_table(std::slice::from_ref(&pool), false, now),
        "NAME      CIDR            BLOCK SIZE   DISABLED   AGE\n\
         default   10.244.0.0/16   26           false      5m\n"
    );
    let wide = render_table(&[pool], true, now);
    assert!(wide.contains("NODE SELECTOR"), "{wide}");
    assert!(wide.contains("all()"), "{wide}");
    assert!(wide.contains("Workload,Tunnel"), "{wide}");
}

#[test]
fn same_content_ignores_datastore_metadata() {
    let a: IPPool = serde_yaml::from_str(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: p\n  \
         resourceVersion: \"7\"\n  uid: abc\nspec:\n  cidr: 10.0.0.0/16\n",
    )
    .unwrap();
    let mut b = a.clone();
    b.metadata.resource_version = None;
    b.metadata.uid = None;
    b.metadata.labels = Some(Default::default());
    assert!(same_content(&a, &b).unwrap());
    b.spec.disabled = true;
    assert!(!same_content(&a, &b).unwrap());
}
