//! Property: a secret handed to a process in any form kports knows never reaches any output
//! kports-core renders: the redacted command line, the JSON of a socket, `check`'s report and
//! `explain`'s answer.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use kports_core::catalog::{Catalog, Role};
use kports_core::check::{self, Input};
use kports_core::explain::{self, Subject};
use kports_core::redact;
use kports_core::{Family, Owner, ProcessRef, Proto, SockState, Socket};
use proptest::prelude::*;

/// Ways a secret is passed; `{m}` is where it goes, `|` separates arguments.
const FORMS: &[&str] = &[
    "--{f}={m}",
    "--{f}|{m}",
    "-{f}|{m}",
    "-{f}={m}",
    "--basic-auth=user:{m}",
    "--user=root:{m}",
    "--user|root:{m}",
    "https://user:{m}@host.example/",
    "--server=https://bob:{m}@127.0.0.1:6443/api",
    "postgres://app:{m}@127.0.0.1:5432/db?sslmode=require",
    "mysql://root:{m}@127.0.0.1:3306/x",
    "redis://:{m}@127.0.0.1:6379/0",
    "-H|Authorization: Bearer {m}",
    "--header=Authorization: Basic {m}",
    "Proxy-Authorization: Basic {m}",
    "X-Auth-Token: {m}",
    "Bearer|{m}",
    "--auth-header|Bearer {m}",
    "{E}={m}",
    "host=db user=app password={m} dbname=x",
    "Server=db;Database=x;Password={m};",
    "https://127.0.0.1/cb?access_token={m}&x=1",
    "pass:{m}",
];

/// Flag names that carry secrets in Kubernetes components, etcd, CNI agents and cloud tools.
const FLAGS: &[&str] = &[
    "token",
    "bootstrap-token",
    "discovery-token",
    "password",
    "etcd-password",
    "oidc-client-secret",
    "client-secret",
    "aws-secret-access-key",
    "aws-session-token",
    "certificate-key",
    "client-key-data",
    "api-key",
    "peer-router-passwords",
    "requirepass",
    "storepass",
    "passin",
    "Token",
    "DB_PASSWORD",
];

const ENV_KEYS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "DB_PASSWORD",
    "GITHUB_TOKEN",
    "VAULT_TOKEN",
    "MYSQL_PWD",
    "AZURE_CLIENT_SECRET",
    "WEAVE_PASSWORD",
];

/// Arguments around the secret, which must not disturb its redaction.
const OTHER_ARGS: &[&str] = &[
    "--v=2",
    "--secure-port=6443",
    "--kubeconfig=/etc/kubernetes/admin.conf",
    "--etcd-keyfile=/etc/k/key.pem",
    "--use-service-account-credentials=true",
    "--token-ttl=24h",
    "get",
    "pods",
    "/etc/k/key.pem",
    "--",
    "-v",
    "10.0.0.1:6443",
];

const PROGRAMS: &[&str] = &[
    "kube-apiserver",
    "/usr/bin/etcd",
    "kubectl",
    "flanneld",
    "curl",
    "aws",
    "app",
];

fn argv_with(program: &str, before: &[&str], form: &str, after: &[&str]) -> Vec<String> {
    let mut argv = vec![program.to_string()];
    argv.extend(before.iter().map(|s| s.to_string()));
    argv.extend(form.split('|').map(str::to_string));
    argv.extend(after.iter().map(|s| s.to_string()));
    argv
}

fn socket(process: ProcessRef) -> Socket {
    let any = IpAddr::from([0, 0, 0, 0]);
    Socket {
        proto: Proto::Tcp,
        family: Family::Ipv4,
        state: SockState::Listen,
        local_address: any,
        local_port: 6443,
        remote_address: any,
        remote_port: 0,
        inode: 77,
        uid: 0,
        interface: None,
        cgroup_id: None,
        processes: Arc::new(vec![Arc::new(process)]),
        owner: Owner::Process,
        component: Some("kube-apiserver"),
        netns: None,
        cgroup: None,
    }
}

/// Every rendering kports-core makes of a process with this command line, by name.
fn renderings(argv: &[String]) -> Vec<(&'static str, String)> {
    let shown = redact::redact(argv);
    let process = ProcessRef {
        pid: 4242,
        name: "kube-apiserver".into(),
        cmdline: shown.text.clone(),
        secrets: shown.hidden.clone(),
        container_id: None,
        pod_uid: None,
    };
    let sockets = vec![socket(process)];
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(|| Catalog::builtin().unwrap());
    let (resolved, _) = kports_core::resolve::resolve_all(catalog, &sockets, &[]);
    let input = Input {
        sockets: &sockets,
        interfaces: &[],
        catalog,
        resolved: &resolved,
        roles: Role::ControlPlane.into(),
        cnis: &[],
        version: None,
        pre_install: false,
    };
    let report = check::check(&input);
    let explained = explain::explain(
        &Subject::Port {
            protocol: None,
            port: 6443,
        },
        &input,
    );
    vec![
        ("redacted text", shown.text.clone()),
        ("hidden", shown.hidden.join(" ")),
        ("socket JSON", serde_json::to_string(&sockets).unwrap()),
        ("socket Debug", format!("{sockets:?}")),
        ("check JSON", serde_json::to_string(&report).unwrap()),
        ("check messages", format!("{:?}", report.findings)),
        ("explain JSON", serde_json::to_string(&explained).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_marker_secret_never_shows(
        secret in "[A-Za-z0-9_.~+!*$]{6,24}",
        form in proptest::sample::select(FORMS),
        flag in proptest::sample::select(FLAGS),
        env in proptest::sample::select(ENV_KEYS),
        program in proptest::sample::select(PROGRAMS),
        before in proptest::collection::vec(proptest::sample::select(OTHER_ARGS), 0..4),
        after in proptest::collection::vec(proptest::sample::select(OTHER_ARGS), 0..4),
    ) {
        // A marker that nothing else in the command line or the catalog contains.
        let marker = format!("Qz{secret}");
        let form = form.replace("{f}", flag).replace("{E}", env).replace("{m}", &marker);
        let argv = argv_with(program, &before, &form, &after);
        let all = renderings(&argv);
        for (what, text) in &all {
            prop_assert!(!text.contains(&marker), "{} shows the secret of {:?}: {}", what, argv, text);
        }
        // And the secret is reported, so that `kports check` warns about it.
        prop_assert!(all[1].1.contains("REDACTED"), "nothing hidden in {:?}", argv);
        prop_assert!(all[4].1.contains("secret-on-command-line"), "{}", all[4].1);
    }
}
