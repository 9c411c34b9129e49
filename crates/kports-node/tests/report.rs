//! The node report on replayed nodes: detection, the one source chooser, every view, errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kports_core::catalog::Role;
use kports_core::finding::FindingId;
use kports_core::role::DetectionSource;
use kports_core::settings::Known;
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
        .map(|f| (f.id.as_str(), f.place()))
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

/// The prerequisite findings of a check: (id, fix).
fn prereqs(node: &NodeReport, pre_install: bool) -> Vec<(FindingId, Option<String>)> {
    node.check(None, pre_install)
        .report
        .findings
        .into_iter()
        .filter(|f| f.id.is_prereq())
        .map(|f| (f.id, f.fix))
        .collect()
}

#[test]
fn the_check_judges_the_replayed_settings_of_the_node() {
    // The example worker is set up right: no prerequisite finding.
    let node = NodeReport::build(&worker(), &Options::default()).unwrap();
    assert_eq!(prereqs(&node, false), []);
    // The settings the report holds are the captured ones, with the route to the API server
    // the census shows (from the replayed routes).
    let s = node.settings.as_ref().unwrap();
    assert_eq!(s.paths.len(), 1);
    assert_eq!(s.paths[0].peer.to_string(), CP);
    assert_eq!(s.paths[0].why, "the API server this node connects to");
    assert_eq!(s.paths[0].dev, Known::Known("eth0".to_string()));

    let mut w = worker();
    w.settings.as_mut().unwrap().ip_forward = Known::Known(0);
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    assert_eq!(
        prereqs(&node, false),
        [(
            FindingId::IpForwardOff,
            Some("sysctl -w net.ipv4.ip_forward=1 (to keep it: `net.ipv4.ip_forward = 1` in /etc/sysctl.d/k8s.conf)".to_string())
        )]
    );
    let checked = node.check(None, false);
    let f = checked
        .report
        .findings
        .iter()
        .find(|f| f.id == FindingId::IpForwardOff)
        .unwrap();
    assert_eq!(
        (f.protocol, f.port, f.place()),
        (None, None, "-".to_string())
    );
    assert_eq!(f.evidence.settings[0].source, "net.ipv4.ip_forward");
    assert_eq!(f.evidence.settings[0].value, "0");

    // No route back to the API server: the path finding names it.
    let mut w = worker();
    w.routes.clear();
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    let checked = node.check(None, false);
    let f: Vec<_> = checked
        .report
        .findings
        .iter()
        .filter(|f| f.id.is_prereq())
        .collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].id, FindingId::PathNoRoute);
    assert_eq!(
        f[0].message,
        "no route to 192.0.2.11, the API server this node connects to: Network is unreachable"
    );
}

#[test]
fn settings_not_captured_are_unknown_and_not_read_when_not_asked_for() {
    let mut w = worker();
    w.settings = None;
    let node = NodeReport::build(&w, &Options::default()).unwrap();
    let found = prereqs(&node, false);
    assert!(!found.is_empty());
    assert!(
        found.iter().all(|(id, _)| *id == FindingId::SettingUnknown),
        "{found:?}"
    );
    let node = NodeReport::build(
        &w,
        &Options {
            prerequisites: false,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(node.settings.is_none());
    assert_eq!(prereqs(&node, false), []);
}
