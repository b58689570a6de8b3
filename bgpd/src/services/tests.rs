use serde_json::json;

use super::*;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> BTreeSet<IpNetwork> {
    list.iter().map(|s| net(s)).collect()
}

fn cfg(aggregate: bool) -> ServiceCfg {
    ServiceCfg {
        cluster: vec![net("10.96.0.0/24")],
        external: vec![net("192.0.2.0/24"), net("198.51.100.7/32")],
        load_balancer: vec![net("203.0.113.0/24")],
        aggregate,
    }
}

/// A Service `name` in `default` with `spec` merged over a ClusterIP one.
fn service(name: &str, spec: serde_json::Value) -> Service {
    let mut s = json!({"type": "ClusterIP", "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"]});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    svc(json!({"metadata": {"namespace": "default", "name": name}, "spec": s}))
}

/// An IPv4 slice of Service `svc_name` with one endpoint per (node, ready).
fn endpoints(
    name: &str,
    svc_name: &str,
    eps: &[(&str, bool)],
) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = eps
        .iter()
        .enumerate()
        .map(|(i, (node, ready))| {
            json!({"addresses": [format!("10.244.0.{}", i + 1)],
                   "nodeName": node, "conditions": {"ready": ready}})
        })
        .collect();
    slice(json!({
        "metadata": {"namespace": "default", "name": name,
            "labels": {SERVICE_NAME_LABEL: svc_name}},
        "addressType": "IPv4",
        "endpoints": eps,
    }))
}

/// A synced core for node `n1` with `cfg`.
fn core(cfg: ServiceCfg) -> ServiceRoutes {
    let mut r = ServiceRoutes::new("n1");
    r.set_config(cfg);
    r.apply(ServiceEvent::ServicesListed(vec![]));
    r.apply(ServiceEvent::SlicesListed(vec![]));
    r
}

fn add(r: &mut ServiceRoutes, s: Service) -> bool {
    r.apply(ServiceEvent::Service(Box::new(s)))
}

fn add_slice(r: &mut ServiceRoutes, s: EndpointSlice) -> bool {
    r.apply(ServiceEvent::Slice(Box::new(s)))
}

fn global() -> BTreeSet<IpNetwork> {
    nets(&["10.96.0.0/24", "192.0.2.0/24", "203.0.113.0/24"])
}

fn with(extra: &[&str]) -> BTreeSet<IpNetwork> {
    let mut g = global();
    g.extend(nets(extra));
    g
}

#[test]
fn every_node_announces_the_ranges_and_cluster_services_add_nothing() {
    let mut r = core(cfg(true));
    // A single-address externalIPs entry is never a global route.
    assert_eq!(r.routes(), global());
    add(&mut r, service("web", json!({})));
    add_slice(&mut r, endpoints("web-1", "web", &[("n1", true)]));
    assert_eq!(r.routes(), global());
    // Aggregation disabled: LoadBalancer ranges are not announced.
    assert!(r.set_config(cfg(false)));
    assert_eq!(
        r.routes(),
        nets(&["10.96.0.0/24", "192.0.2.0/24", "10.96.0.10/32"])
    );
}

#[test]
fn local_service_is_announced_only_by_nodes_with_a_ready_endpoint() {
    let mut r = core(cfg(true));
    let spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "externalIPs": ["192.0.2.5", "10.1.1.1"]});
    let mut s = service("lb", spec);
    s.status = Some(serde_json::from_value(json!(
        {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"ip": "8.8.8.8"}]}}
    )).unwrap());
    add(&mut r, s);
    // No slice yet: nothing of it.
    assert_eq!(r.routes(), global());
    // An endpoint on another node, and a not-ready one here: nothing.
    add_slice(
        &mut r,
        endpoints("lb-1", "lb", &[("n2", true), ("n1", false)]),
    );
    assert_eq!(r.routes(), global());
    // Ready here: the cluster IP, the external IP and the LoadBalancer IP
    // inside the ranges, as /32s; never the addresses outside them.
    assert!(add_slice(
        &mut r,
        endpoints("lb-1", "lb", &[("n2", true), ("n1", true)])
    ));
    let local = with(&["10.96.0.10/32", "192.0.2.5/32", "203.0.113.9/32"]);
    assert_eq!(r.routes(), local);
    // A second slice with nothing here changes nothing.
    assert!(!add_slice(&mut r, endpoints("lb-2", "lb", &[("n3", true)])));
    assert_eq!(r.routes(), local);
    // The endpoint moves away: withdrawn.
    assert!(add_slice(&mut r, endpoints("lb-1", "lb", &[("n2", true)])));
    assert_eq!(r.routes(), global());
    // Back, then the slice is deleted: withdrawn.
    add_slice(&mut r, endpoints("lb-1", "lb", &[("n1", true)]));
    assert_eq!(r.routes(), local);
    assert!(r.apply(ServiceEvent::SliceDeleted {
        namespace: "default".into(),
        name: "lb-1".into()
    }));
    assert_eq!(r.routes(), global());
}

#[test]
fn deleting_the_service_withdraws_its_routes_in_one_event() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service(
            "l",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
        ),
    );
    add_slice(&mut r, endpoints("l-1", "l", &[("n1", true)]));
    assert_eq!(r.routes(), with(&["10.96.0.10/32"]));
    assert!(r.apply(ServiceEvent::ServiceDeleted {
        namespace: "default".into(),
        name: "l".into()
    }));
    assert_eq!(r.routes(), global());
    // Its slice arriving late announces nothing.
    assert!(!add_slice(&mut r, endpoints("l-1", "l", &[("n1", true)])));
}

#[test]
fn internal_traffic_policy_local_counts_as_local() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service("i", json!({"internalTrafficPolicy": "Local"})),
    );
    add_slice(&mut r, endpoints("i-1", "i", &[("n2", true)]));
    assert_eq!(r.routes(), global());
    add_slice(&mut r, endpoints("i-1", "i", &[("n1", true)]));
    assert_eq!(r.routes(), with(&["10.96.0.10/32"]));
}

#[test]
fn aggregation_disabled_announces_cluster_services_with_any_ready_endpoint() {
    let mut r = core(cfg(false));
    let mut s = service("lb", json!({"type": "LoadBalancer"}));
    s.status = Some(
        serde_json::from_value(json!(
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
        ))
        .unwrap(),
    );
    add(&mut r, s);
    let ranges = nets(&["10.96.0.0/24", "192.0.2.0/24"]);
    assert_eq!(r.routes(), ranges);
    add_slice(&mut r, endpoints("lb-1", "lb", &[("n3", true)]));
    let mut want = ranges.clone();
    want.extend(nets(&["10.96.0.10/32", "203.0.113.9/32"]));
    assert_eq!(r.routes(), want);
    // Enabled again: the range covers it.
    r.set_config(cfg(true));
    assert_eq!(r.routes(), global());
}

#[test]
fn cluster_service_on_a_single_address_entry_is_announced_everywhere() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service(
            "x",
            json!({"type": "NodePort", "externalIPs": ["198.51.100.7"]}),
        ),
    );
    assert_eq!(r.routes(), with(&["10.96.0.10/32", "198.51.100.7/32"]));
}

#[test]
fn headless_and_external_name_services_are_never_announced() {
    let mut r = core(cfg(false));
    add(
        &mut r,
        service("h", json!({"clusterIP": "None", "clusterIPs": ["None"]})),
    );
    add(
        &mut r,
        svc(json!({"metadata": {"namespace": "default", "name": "e"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}})),
    );
    add_slice(&mut r, endpoints("h-1", "h", &[("n1", true)]));
    add_slice(&mut r, endpoints("e-1", "e", &[("n1", true)]));
    assert_eq!(r.routes(), nets(&["10.96.0.0/24", "192.0.2.0/24"]));
}

#[test]
fn a_slice_of_another_family_does_not_count() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service(
            "l",
            json!({"externalTrafficPolicy": "Local", "type": "NodePort"}),
        ),
    );
    let mut s = endpoints("l-1", "l", &[("n1", true)]);
    s.address_type = "IPv6".into();
    s.endpoints[0].addresses = vec!["fd00::1".into()];
    add_slice(&mut r, s);
    assert_eq!(r.routes(), global());
}

#[test]
fn a_shared_address_is_withdrawn_only_when_no_service_announces_it() {
    let mut r = core(cfg(true));
    let spec = json!({"type": "NodePort", "externalTrafficPolicy": "Local",
        "externalIPs": ["192.0.2.5"]});
    add(&mut r, service("a", spec.clone()));
    let mut b = spec.clone();
    b["clusterIP"] = json!("10.96.0.11");
    b["clusterIPs"] = json!(["10.96.0.11"]);
    add(&mut r, service("b", b));
    add_slice(&mut r, endpoints("a-1", "a", &[("n1", true)]));
    add_slice(&mut r, endpoints("b-1", "b", &[("n1", true)]));
    let both = with(&["10.96.0.10/32", "10.96.0.11/32", "192.0.2.5/32"]);
    assert_eq!(r.routes(), both);
    r.apply(ServiceEvent::ServiceDeleted {
        namespace: "default".into(),
        name: "a".into(),
    });
    assert_eq!(r.routes(), with(&["10.96.0.11/32", "192.0.2.5/32"]));
}

#[test]
fn a_bad_service_is_reported_and_stops_nothing_else() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service(
            "ok",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
        ),
    );
    add_slice(&mut r, endpoints("ok-1", "ok", &[("n1", true)]));
    assert!(add(
        &mut r,
        service("bad", json!({"externalIPs": ["192.0.2.300"]}))
    ));
    let bad: Vec<&InvalidObject> = r.invalid().collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        (
            bad[0].kind.as_str(),
            bad[0].name.as_str(),
            bad[0].field.as_str()
        ),
        ("Service", "default/bad", "spec.externalIPs[0]")
    );
    assert_eq!(r.routes(), with(&["10.96.0.10/32"]));
    // The same error again changes nothing; another one is reported.
    assert!(!add(
        &mut r,
        service("bad", json!({"externalIPs": ["192.0.2.300"]}))
    ));
    assert!(add(&mut r, service("bad", json!({"externalIPs": ["x"]}))));
    assert_eq!(
        r.invalid().next().unwrap().error,
        "\"x\" is invalid: allowed an IPv4 or IPv6 address; the Service's addresses are not announced"
    );
    // Fixed: no longer reported.
    assert!(add(&mut r, service("bad", json!({}))));
    assert_eq!(r.invalid().count(), 0);
}

#[test]
fn a_relist_replaces_what_was_known() {
    let mut r = core(cfg(true));
    add(
        &mut r,
        service(
            "l",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
        ),
    );
    add_slice(&mut r, endpoints("l-1", "l", &[("n1", true)]));
    assert_eq!(r.routes(), with(&["10.96.0.10/32"]));
    // The slice was deleted while the watch was down.
    r.apply(ServiceEvent::SlicesListed(vec![]));
    assert_eq!(r.routes(), global());
}

#[test]
fn bad_cidrs_in_the_configuration_are_left_out_and_named() {
    let spec: BGPConfigurationSpec = serde_json::from_value(json!({
        "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "nope"}],
        "serviceLoadBalancerAggregation": "Disabled",
    }))
    .unwrap();
    let mut invalid = Vec::new();
    let c = ServiceCfg::from_spec(&spec, "default", &mut invalid);
    assert_eq!(c.cluster, vec![net("10.96.0.0/12")]);
    assert!(!c.aggregate);
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].field, "spec.serviceClusterIPs[1].cidr");
}
