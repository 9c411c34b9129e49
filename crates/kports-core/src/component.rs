//! Recognising the Kubernetes component a process is, from its executable and command line.
//!
//! Never from the port alone: a port says what *should* listen there, the process says what
//! does. Names are matched on the full program name (see [`crate::names`]), and multiplexing
//! binaries (`hyperkube kubelet`, `kubectl proxy`, `calico-node -felix`, `k3s server`) are told
//! apart by their arguments.

use crate::ProcessInfo;
use crate::names::{basename, process_name};

/// Executables that are one component whatever their arguments: (program name, component).
const PLAIN: &[(&str, &str)] = &[
    ("kube-apiserver", "kube-apiserver"),
    ("kube-controller-manager", "kube-controller-manager"),
    ("kube-scheduler", "kube-scheduler"),
    ("kubelet", "kubelet"),
    ("kube-proxy", "kube-proxy"),
    ("etcd", "etcd"),
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("crio", "cri-o"),
    ("dockerd", "docker"),
    ("cri-dockerd", "cri-dockerd"),
    ("calico-typha", "calico-typha"),
    ("bird", "calico-node"),
    ("bird6", "calico-node"),
    ("flanneld", "flannel"),
    ("cilium-agent", "cilium-agent"),
    ("cilium-operator", "cilium-operator"),
    ("cilium-operator-generic", "cilium-operator"),
    ("cilium-envoy", "cilium-envoy"),
    ("hubble-relay", "hubble-relay"),
    ("coredns", "coredns"),
    ("kube-router", "kube-router"),
    ("weaver", "weave"),
    ("weave-npc", "weave"),
    ("antrea-agent", "antrea-agent"),
    ("antrea-controller", "antrea-controller"),
    ("metrics-server", "metrics-server"),
    ("nginx-ingress-controller", "ingress-nginx"),
    ("konnectivity-server", "konnectivity-server"),
    ("proxy-server", "konnectivity-server"),
    ("konnectivity-agent", "konnectivity-agent"),
    ("haproxy", "haproxy"),
    ("keepalived", "keepalived"),
    ("k3s", "k3s"),
    ("k3s-server", "k3s"),
    ("k3s-agent", "k3s"),
    ("rke2", "rke2"),
];

/// The component `p` is, if kports knows it.
pub fn recognise(p: &ProcessInfo) -> Option<&'static str> {
    let name = process_name(p);
    let args: Vec<&str> = p.argv.iter().skip(1).map(String::as_str).collect();
    let first_word = || args.iter().find(|a| !a.starts_with('-')).copied();
    match name.as_str() {
        // `hyperkube kubelet ...` and `hyperkube kube-apiserver ...`.
        "hyperkube" => first_word().and_then(|w| lookup(w)),
        // Only `proxy` and `port-forward` listen; global flags with values may stand before
        // the subcommand (`kubectl -n ns port-forward`), so look at every word.
        "kubectl" | "oc" => args.iter().find_map(|a| match *a {
            "proxy" => Some("kubectl-proxy"),
            "port-forward" => Some("kubectl-port-forward"),
            _ => None,
        }),
        // calico-node runs felix, bird, confd as `calico-node -felix`, `-bird`, ...
        "calico-node" => Some("calico-node"),
        _ => lookup(&name).or_else(|| {
            // A renamed or wrapped binary: try the executable's own name too.
            p.exe.as_deref().and_then(|e| lookup(basename(e)))
        }),
    }
}

fn lookup(name: &str) -> Option<&'static str> {
    PLAIN.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Components recognised by arguments rather than by program name (see [`recognise`]).
const BY_ARGUMENTS: [&str; 3] = ["kubectl-proxy", "kubectl-port-forward", "calico-node"];

/// The component of a UDP socket the kernel holds for a tunnel device of `kind`.
pub fn kernel_tunnel(kind: &str) -> &'static str {
    match kind {
        "vxlan" => "vxlan (kernel)",
        "geneve" => "geneve (kernel)",
        _ => "tunnel (kernel)",
    }
}

/// Every component name a socket can be given, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = PLAIN
        .iter()
        .map(|(_, c)| *c)
        .chain(BY_ARGUMENTS)
        .chain(["vxlan", "geneve", "tunnel"].map(kernel_tunnel))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The component `name` stands for: a component's name, a program name kports recognises
/// (`flanneld`), or a part of one component's name only (`apiserver`, `scheduler`), as
/// `kports explain` takes them. An unknown or ambiguous name is an error that lists the
/// candidates.
pub fn canonical(name: &str) -> Result<&'static str, String> {
    let want = name.trim().to_ascii_lowercase();
    let all = names();
    if let Some(c) = all.iter().find(|c| **c == want) {
        return Ok(c);
    }
    if let Some(c) = lookup(&want) {
        return Ok(c);
    }
    let parts: Vec<&str> = if want.len() >= 4 {
        all.iter().copied().filter(|c| c.contains(&want)).collect()
    } else {
        Vec::new()
    };
    match parts.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "`{name}` is not a component kports recognises; one of: {}",
            all.join(", ")
        )),
        many => Err(format!(
            "`{name}` could be any of {}: name one",
            many.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(comm: &str, exe: &str, argv: &[&str], expected: Option<&str>) {
        let p = ProcessInfo {
            pid: 7,
            comm: comm.into(),
            exe: (!exe.is_empty()).then(|| exe.to_string()),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cgroup: String::new(),
        };
        assert_eq!(recognise(&p), expected, "{comm} {exe} {argv:?}");
    }

    #[test]
    fn component_names_and_their_aliases() {
        assert_eq!(canonical("kube-apiserver"), Ok("kube-apiserver"));
        assert_eq!(canonical("apiserver"), Ok("kube-apiserver"));
        assert_eq!(canonical("Scheduler"), Ok("kube-scheduler"));
        assert_eq!(canonical("flanneld"), Ok("flannel"));
        assert_eq!(canonical("vxlan (kernel)"), Ok("vxlan (kernel)"));
        let e = canonical("nosuch").unwrap_err();
        assert!(e.contains("one of: ") && e.contains("kubelet"), "{e}");
        let e = canonical("proxy").unwrap_err();
        assert!(
            e.contains("kube-proxy") && e.contains("kubectl-proxy"),
            "{e}"
        );
        // Too short to stand for a part of a name.
        assert!(canonical("etc").is_err());
        for c in names() {
            assert_eq!(canonical(c), Ok(c));
        }
    }

    #[test]
    fn control_plane() {
        check(
            "kube-apiserver",
            "/usr/local/bin/kube-apiserver",
            &["kube-apiserver"],
            Some("kube-apiserver"),
        );
        check(
            "kube-controller",
            "/usr/local/bin/kube-controller-manager",
            &["kube-controller-manager", "--bind-address=127.0.0.1"],
            Some("kube-controller-manager"),
        );
        check(
            "kube-scheduler",
            "/usr/local/bin/kube-scheduler",
            &["kube-scheduler"],
            Some("kube-scheduler"),
        );
        check(
            "etcd",
            "/usr/local/bin/etcd",
            &["etcd", "--name=cp1"],
            Some("etcd"),
        );
    }

    #[test]
    fn kubectl_is_told_apart_by_subcommand() {
        check(
            "kubectl",
            "/usr/bin/kubectl",
            &["kubectl", "proxy", "--port=8888"],
            Some("kubectl-proxy"),
        );
        check(
            "kubectl",
            "/usr/bin/kubectl",
            &["kubectl", "-n", "x", "port-forward", "svc/a", "8080:80"],
            Some("kubectl-port-forward"),
        );
        check(
            "kubectl",
            "/usr/bin/kubectl",
            &["kubectl", "port-forward", "svc/a", "8080:80"],
            Some("kubectl-port-forward"),
        );
        check(
            "kubectl",
            "/usr/bin/kubectl",
            &["kubectl", "get", "pods"],
            None,
        );
    }

    #[test]
    fn multiplexers() {
        check(
            "hyperkube",
            "/hyperkube",
            &["/hyperkube", "kubelet", "--v=2"],
            Some("kubelet"),
        );
        check(
            "calico-node",
            "/usr/bin/calico-node",
            &["calico-node", "-felix"],
            Some("calico-node"),
        );
        check(
            "k3s-server",
            "/usr/local/bin/k3s",
            &["/usr/local/bin/k3s", "server"],
            Some("k3s"),
        );
    }

    #[test]
    fn unknown_process_is_no_component() {
        check("nginx", "/usr/sbin/nginx", &["nginx: worker process"], None);
        check(
            "python3",
            "/usr/bin/python3.11",
            &["python3", "-m", "http.server"],
            None,
        );
    }

    #[test]
    fn the_port_does_not_decide() {
        // A netcat on 6443 is not the API server.
        check("nc", "/usr/bin/nc.openbsd", &["nc", "-l", "6443"], None);
    }
}
