//! The node report on replayed nodes: detection, the one source chooser, every view, errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kports_core::catalog::Role;
use kports_core::role::DetectionSource;
use kports_firewall::model::parse_cidr;
use kports_firewall::plan::PlanBackend;
use kports_firewall::required::SourceKind;
use kports_firewall::sources::Origin;
use kports_node::{Error, NodeReport, Options, Replay};

const CP: &str = "192.0.2.11";

fn worker() -> Replay {
    Replay::example_worker()
}

#[test]
fn a_worker_is_detected_and_its_blocked_kubelet_found_from_the_control_plane() {
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert_eq!(node.hostname, "w1");
    assert_eq!(node.role.value, Some(Role::Worker));
    assert_eq!(node.role.source, DetectionSource::Detected);
    let fw = node.firewall.as_ref().unwrap();
    // The one chooser: the API server this node connects to is the control plane, routed on eth0.
    let cp: Vec<_> = fw.sources.of(SourceKind::ControlPlane).collect();
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0].source.range.to_string(), CP);
    assert_eq!(
        cp[0].origin,
        Origin::Peer("the API server this node connects to")
    );
    assert_eq!(cp[0].source.iif.as_deref(), Some("eth0"));
    let checked = node.check(None, false);
    let ids: Vec<(&str, String)> = checked
        .report
        .findings
        .iter()
        .map(|f| (f.id.as_str(), format!("{}/{}", f.protocol.as_str(), f.port)))
        .collect();
    assert_eq!(
        ids,
        [("firewall-blocks-required-port", "tcp/10250".to_string())]
    );
    assert_eq!(
        checked.report.findings[0].evidence.firewall[0].source,
        "192.0.2.11 (the API server this node connects to)"
    );
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
}

#[test]
fn firewall_check_and_plan_use_the_same_sources_as_the_check() {
    let net = [parse_cidr("192.0.2.0/24").unwrap()];
    let node = NodeReport::build(
        &worker(),
        &Options {
            sources: net.to_vec(),
            ..Options::default()
        },
    )
    .unwrap();
    let fc = node.firewall_check().unwrap();
    let kubelet: Vec<(&str, &str, Option<bool>)> = fc
        .rows
        .iter()
        .filter(|r| r.port.lo == 10250)
        .map(|r| (r.source_kind.as_str(), r.source.as_str(), r.ok))
        .collect();
    assert_eq!(
        kubelet,
        [
            ("control-plane", CP, Some(false)),
            ("others", "192.0.2.0-192.0.2.10", Some(true)),
            ("others", "192.0.2.12-192.0.2.255", Some(true)),
        ]
    );
    assert!(
        fc.notes
            .iter()
            .any(|n| n == "control plane: 192.0.2.11 (the API server this node connects to) (from this node's connections)"),
        "{:?}",
        fc.notes
    );
    // The plan opens the kubelet to the control plane the census shows.
    let fp = node.firewall_plan(PlanBackend::Nft, None).unwrap();
    assert!(fp.plan.script.contains("192.0.2.11"), "{}", fp.plan.script);
}

#[test]
fn a_plan_without_sources_and_an_unknown_role_are_refused() {
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert!(matches!(
        node.firewall_plan(PlanBackend::Nft, None),
        Err(Error::PlanNeedsSources)
    ));
    let empty = Replay {
        hostname: "x".into(),
        ..Replay::default()
    };
    let node = NodeReport::build(&empty, &Options::default()).unwrap();
    let e = node.firewall_check().unwrap_err();
    assert_eq!(
        e.to_string(),
        "the node's role is unknown (no Kubernetes component holds a socket here): pass --role"
    );
}

#[test]
fn given_role_and_cni_win_and_a_bad_cni_is_refused() {
    let node = NodeReport::build(
        &worker(),
        &Options {
            role: Some(Role::ControlPlane),
            cni: Some(vec!["Flannel".into(), "none".into()]),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(node.role.value, Some(Role::ControlPlane));
    assert_eq!(node.role.source, DetectionSource::Flag);
    assert_eq!(node.cni.value, ["flannel"]);
    let e = NodeReport::build(
        &worker(),
        &Options {
            cni: Some(vec!["bogus".into()]),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("--cni bogus: the catalog knows "),
        "{e}"
    );
}

#[test]
fn a_failed_census_is_an_error_or_a_warning_as_asked() {
    let broken = Replay {
        census_error: Some("Permission denied".into()),
        ..worker()
    };
    let e = NodeReport::build(&broken, &Options::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Census(c) if c.is_permission() || c.to_string().contains("Permission denied"))
    );
    let node = NodeReport::build(
        &broken,
        &Options {
            census_required: false,
            role: Some(Role::Worker),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(node.census_warnings.len(), 1);
    assert_eq!(node.census_warnings[0].code, "census-failed");
    assert!(node.sockets.is_empty());
}

#[test]
fn catalog_files_are_read_through_the_io_and_refused_with_line_and_reason() {
    let path = PathBuf::from("/etc/kports/bad.toml");
    let mut r = worker();
    r.files.insert(
        path.clone(),
        "[[port]]\ncomponent = \"etcd\"\nprotocol = \"tcp\"\nport = 0\n".into(),
    );
    let o = Options {
        catalog: Some(path),
        ..Options::default()
    };
    let e = NodeReport::build(&r, &o).unwrap_err();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert_eq!(
        msg,
        "refusing the catalog file: /etc/kports/bad.toml:4:8: port 0 is not valid: use 1-65535"
    );
    let missing = Options {
        catalog: Some("/nonexistent.toml".into()),
        ..Options::default()
    };
    let e = NodeReport::build(&worker(), &missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read the catalog file /nonexistent.toml"
    );
}

#[test]
fn a_report_without_the_firewall_refuses_firewall_views() {
    let node = NodeReport::build(
        &worker(),
        &Options {
            firewall: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(matches!(node.firewall_check(), Err(Error::FirewallNotRead)));
    // The check still runs, without firewall findings.
    assert!(node.check(None, false).report.findings.is_empty());
}
