//! The Kubernetes components of the lab: which run where, their kubeadm-style command lines,
//! and what those command lines say they listen on and connect to.
//!
//! The same functions serve both sides: `kports lab up` builds a command line with [`args`],
//! and the stand-in process reads its own command line back with [`listeners`] and [`clients`],
//! so a component listens exactly where its flags say (as the real one would), and a flag
//! changed by a `bind` fault changes the listener.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::{Node, POD_NETWORK, Plan, Role};

/// Connections a kube-apiserver keeps to each of its etcd servers. A real one holds dozens
/// (one gRPC connection per resource storage), which is why etcd's client port is far busier
/// than its peer port.
pub const APISERVER_ETCD_CONNECTIONS: usize = 40;
/// Connections an etcd member keeps to each peer (etcd's stream and pipeline transports).
pub const ETCD_PEER_CONNECTIONS: usize = 2;

/// A component the lab runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    KubeProxy,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubelet,
        Component::KubeProxy,
    ];

    /// The program name, as the real binary is called.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
        }
    }

    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The components of `node`, in start order (etcd before the API server, the API server
    /// before its clients).
    pub fn for_node(node: &Node) -> &'static [Component] {
        match (node.role, node.etcd) {
            (Role::ControlPlane, _) => &Component::ALL,
            (Role::Worker, true) => &[Component::Etcd, Component::Kubelet, Component::KubeProxy],
            (Role::Worker, false) => &[Component::Kubelet, Component::KubeProxy],
        }
    }

    /// The kubeconfig file a component reads the API server's address from, if it has one.
    pub fn kubeconfig_file(self) -> Option<&'static str> {
        match self {
            Component::KubeControllerManager => Some("controller-manager.conf"),
            Component::KubeScheduler => Some("scheduler.conf"),
            Component::Kubelet => Some("kubelet.conf"),
            Component::KubeProxy => Some("kube-proxy.conf"),
            Component::Etcd | Component::KubeApiserver => None,
        }
    }
}

/// Where a component's command line points to on disk.
#[derive(Debug, Clone, Copy)]
pub struct Dirs<'a> {
    /// etcd's data directory root (one subdirectory per member).
    pub etcd_data: &'a Path,
    /// The node's kubeconfig directory.
    pub kubeconfig: &'a Path,
}

/// `http://ADDR:PORT`, with brackets around an IPv6 address.
fn url(ip: IpAddr, port: u16) -> String {
    format!("http://{}", SocketAddr::new(ip, port))
}

/// The arguments (after argv\[0\]) of `c` on `node`, in kubeadm's style and flag order.
/// `bind` is the address a `bind` fault moved the component's main listener to.
pub fn args(
    c: Component,
    plan: &Plan,
    node: &Node,
    bind: Option<IpAddr>,
    dirs: Dirs<'_>,
) -> Vec<String> {
    let ip = IpAddr::V4(node.ipv4);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (pod_net, pod_len) = POD_NETWORK;
    let kubeconfig = c
        .kubeconfig_file()
        .map(|f| format!("--kubeconfig={}", dirs.kubeconfig.join(f).display()));
    let mut v: Vec<String> = match c {
        Component::Etcd => {
            let cluster: Vec<String> = plan
                .etcd_members()
                .map(|n| format!("{}={}", n.name, url(IpAddr::V4(n.ipv4), 2380)))
                .collect();
            let client_urls = match bind {
                Some(b) => url(b, 2379),
                None => format!("{},{}", url(localhost, 2379), url(ip, 2379)),
            };
            vec![
                format!("--advertise-client-urls={}", url(ip, 2379)),
                format!("--data-dir={}", dirs.etcd_data.join(&node.name).display()),
                format!("--initial-advertise-peer-urls={}", url(ip, 2380)),
                format!("--initial-cluster={}", cluster.join(",")),
                format!("--listen-client-urls={client_urls}"),
                format!("--listen-metrics-urls={}", url(localhost, 2381)),
                format!("--listen-peer-urls={}", url(ip, 2380)),
                format!("--name={}", node.name),
                "--snapshot-count=10000".into(),
            ]
        }
        Component::KubeApiserver => {
            let mut v = vec![
                format!("--advertise-address={ip}"),
                "--allow-privileged=true".into(),
                "--authorization-mode=Node,RBAC".into(),
            ];
            if let Some(b) = bind {
                v.push(format!("--bind-address={b}"));
            }
            v.extend([
                "--enable-admission-plugins=NodeRestriction".into(),
                "--enable-bootstrap-token-auth=true".into(),
                format!("--etcd-servers={}", url(localhost, 2379)),
                "--secure-port=6443".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
            ]);
            v
        }
        Component::KubeControllerManager => vec![
            "--allocate-node-cidrs=true".into(),
            format!("--bind-address={}", bind.unwrap_or(localhost)),
            format!("--cluster-cidr={pod_net}/{pod_len}"),
            "--cluster-name=kubernetes".into(),
            "--controllers=*,bootstrapsigner,tokencleaner".into(),
            kubeconfig.unwrap_or_default(),
            "--leader-elect=true".into(),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            "--use-service-account-credentials=true".into(),
        ],
        Component::KubeScheduler => vec![
            format!("--bind-address={}", bind.unwrap_or(localhost)),
            kubeconfig.unwrap_or_default(),
            "--leader-elect=true".into(),
        ],
        Component::Kubelet => vec![
            format!(
                "--address={}",
                bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            ),
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock".into(),
            "--healthz-bind-address=127.0.0.1".into(),
            "--healthz-port=10248".into(),
            kubeconfig.unwrap_or_default(),
            format!("--node-ip={ip}"),
            "--port=10250".into(),
            "--read-only-port=0".into(),
        ],
        Component::KubeProxy => vec![
            format!("--cluster-cidr={pod_net}/{pod_len}"),
            format!(
                "--healthz-bind-address={}",
                SocketAddr::new(bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 10256)
            ),
            format!("--hostname-override={}", node.name),
            kubeconfig.unwrap_or_default(),
            format!(
                "--metrics-bind-address={}",
                SocketAddr::new(localhost, 10249)
            ),
        ],
    };
    v.retain(|a| !a.is_empty());
    v
}

/// The kubeconfig a component of the lab reads: only the API server's address matters.
pub fn kubeconfig(server: IpAddr, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {}\n  name: kubernetes\n\
         contexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\n\
         current-context: {user}@kubernetes\nusers:\n- name: {user}\n",
        url(server, 6443)
    )
}

/// The API server address of a kubeconfig: its first `server:` line.
pub fn kubeconfig_server(text: &str) -> Result<SocketAddr, String> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .ok_or("the kubeconfig has no `server:` line")?;
    parse_url(line.trim())
}

/// The value of the last `--name=value` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
}

fn parse_url(u: &str) -> Result<SocketAddr, String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("`{u}` is not an http:// or https:// URL"))?;
    let rest = rest.trim_end_matches('/');
    rest.parse().map_err(|_| {
        format!("`{u}` does not name an IP address and port (host names are not supported here)")
    })
}

fn parse_ip(name: &str, v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| format!("--{name}={v}: not an IP address"))
}

fn parse_port(name: &str, v: &str) -> Result<u16, String> {
    v.parse()
        .map_err(|_| format!("--{name}={v}: not a port number"))
}

fn ip_flag(args: &[String], name: &str, default: IpAddr) -> Result<IpAddr, String> {
    flag(args, name).map_or(Ok(default), |v| parse_ip(name, v))
}

fn port_flag(args: &[String], name: &str, default: u16) -> Result<u16, String> {
    flag(args, name).map_or(Ok(default), |v| parse_port(name, v))
}

fn addr_flag(args: &[String], name: &str, default: &str) -> Result<SocketAddr, String> {
    let v = flag(args, name).unwrap_or(default);
    v.parse()
        .map_err(|_| format!("--{name}={v}: not an ADDRESS:PORT"))
}

fn urls_flag(args: &[String], name: &str) -> Result<Vec<SocketAddr>, String> {
    let v = flag(args, name).ok_or_else(|| format!("--{name} is missing"))?;
    v.split(',').map(|u| parse_url(u.trim())).collect()
}

/// The TCP addresses `c` listens on when run with `args`, as the real component would read
/// its flags (defaults included). `0.0.0.0` means every address, IPv4 and IPv6: Go binds
/// `[::]` for it.
pub fn listeners(c: Component, args: &[String]) -> Result<Vec<SocketAddr>, String> {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let one = |name: &str, default_port: u16| -> Result<Vec<SocketAddr>, String> {
        Ok(vec![SocketAddr::new(
            ip_flag(args, "bind-address", any)?,
            port_flag(args, name, default_port)?,
        )])
    };
    match c {
        Component::Etcd => {
            let mut v = urls_flag(args, "listen-client-urls")?;
            v.extend(urls_flag(args, "listen-peer-urls")?);
            if flag(args, "listen-metrics-urls").is_some() {
                v.extend(urls_flag(args, "listen-metrics-urls")?);
            }
            Ok(v)
        }
        Component::KubeApiserver => one("secure-port", 6443),
        Component::KubeControllerManager => one("secure-port", 10257),
        Component::KubeScheduler => one("secure-port", 10259),
        Component::Kubelet => {
            let mut v = vec![
                SocketAddr::new(
                    ip_flag(args, "address", any)?,
                    port_flag(args, "port", 10250)?,
                ),
                SocketAddr::new(
                    ip_flag(args, "healthz-bind-address", localhost)?,
                    port_flag(args, "healthz-port", 10248)?,
                ),
            ];
            // The CLI default is 10255, but kubeadm's kubelet config turns it off.
            let ro = port_flag(args, "read-only-port", 0)?;
            if ro != 0 {
                v.push(SocketAddr::new(v[0].ip(), ro));
            }
            Ok(v)
        }
        Component::KubeProxy => Ok(vec![
            addr_flag(args, "healthz-bind-address", "0.0.0.0:10256")?,
            addr_flag(args, "metrics-bind-address", "127.0.0.1:10249")?,
        ]),
    }
}

/// The long-lived connections `c` keeps, read from its flags: (server, how many). Components
/// with a kubeconfig also keep one connection to the API server named in it (see
/// [`kubeconfig_server`]); reading that file is the caller's business.
pub fn clients(c: Component, args: &[String]) -> Result<Vec<(SocketAddr, usize)>, String> {
    match c {
        Component::KubeApiserver => Ok(urls_flag(args, "etcd-servers")?
            .into_iter()
            .map(|a| (a, APISERVER_ETCD_CONNECTIONS))
            .collect()),
        Component::Etcd => {
            let me = flag(args, "name").unwrap_or("default");
            let Some(cluster) = flag(args, "initial-cluster") else {
                return Ok(Vec::new());
            };
            let mut v = Vec::new();
            for member in cluster.split(',') {
                let (name, u) = member
                    .split_once('=')
                    .ok_or_else(|| format!("--initial-cluster: `{member}` is not NAME=URL"))?;
                if name != me {
                    v.push((parse_url(u)?, ETCD_PEER_CONNECTIONS));
                }
            }
            Ok(v)
        }
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Counts;

    fn built(c: Component, node: &str, bind: Option<&str>) -> Vec<String> {
        let plan = Plan::new(Counts {
            control_plane: 2,
            workers: 1,
            etcd_workers: 0,
        });
        let node = plan.node(node).unwrap().clone();
        let dirs = Dirs {
            etcd_data: Path::new("/run/kports-lab/etcd"),
            kubeconfig: Path::new("/k"),
        };
        args(c, &plan, &node, bind.map(|b| b.parse().unwrap()), dirs)
    }

    fn strings(v: &[SocketAddr]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn names_round_trip() {
        for c in Component::ALL {
            assert_eq!(Component::from_name(c.name()), Some(c));
        }
        assert_eq!(Component::from_name("kports"), None);
        assert_eq!(Component::from_name("kube-controlle"), None);
    }

    #[test]
    fn etcd_listens_where_kubeadm_puts_it() {
        let a = built(Component::Etcd, "cp2", None);
        assert!(a.contains(
            &"--listen-client-urls=http://127.0.0.1:2379,http://192.0.2.12:2379".to_string()
        ));
        assert!(a.contains(
            &"--initial-cluster=cp1=http://192.0.2.11:2380,cp2=http://192.0.2.12:2380".to_string()
        ));
        assert!(a.contains(&"--data-dir=/run/kports-lab/etcd/cp2".to_string()));
        assert_eq!(
            strings(&listeners(Component::Etcd, &a).unwrap()),
            [
                "127.0.0.1:2379",
                "192.0.2.12:2379",
                "192.0.2.12:2380",
                "127.0.0.1:2381"
            ]
        );
        assert_eq!(
            clients(Component::Etcd, &a).unwrap(),
            vec![("192.0.2.11:2380".parse().unwrap(), ETCD_PEER_CONNECTIONS)]
        );
    }

    #[test]
    fn etcd_bound_narrower_keeps_its_peer_port() {
        let a = built(Component::Etcd, "cp1", Some("127.0.0.1"));
        assert_eq!(
            strings(&listeners(Component::Etcd, &a).unwrap()),
            ["127.0.0.1:2379", "192.0.2.11:2380", "127.0.0.1:2381"]
        );
        let a = built(Component::Etcd, "cp1", Some("2001:db8::11"));
        assert_eq!(
            strings(&listeners(Component::Etcd, &a).unwrap())[0],
            "[2001:db8::11]:2379"
        );
    }

    #[test]
    fn apiserver_command_line_and_connections() {
        let a = built(Component::KubeApiserver, "cp1", None);
        assert_eq!(a[0], "--advertise-address=192.0.2.11");
        assert!(a.contains(&"--etcd-servers=http://127.0.0.1:2379".to_string()));
        assert!(!a.iter().any(|f| f.starts_with("--bind-address")));
        assert_eq!(
            strings(&listeners(Component::KubeApiserver, &a).unwrap()),
            ["0.0.0.0:6443"]
        );
        assert_eq!(
            clients(Component::KubeApiserver, &a).unwrap(),
            vec![(
                "127.0.0.1:2379".parse().unwrap(),
                APISERVER_ETCD_CONNECTIONS
            )]
        );
        let a = built(Component::KubeApiserver, "cp1", Some("192.0.2.11"));
        assert_eq!(
            strings(&listeners(Component::KubeApiserver, &a).unwrap()),
            ["192.0.2.11:6443"]
        );
    }

    #[test]
    fn loopback_components_and_their_binds() {
        let cm = built(Component::KubeControllerManager, "cp1", None);
        assert!(cm.contains(&"--bind-address=127.0.0.1".to_string()));
        assert!(cm.contains(&"--kubeconfig=/k/controller-manager.conf".to_string()));
        assert_eq!(
            strings(&listeners(Component::KubeControllerManager, &cm).unwrap()),
            ["127.0.0.1:10257"]
        );
        let s = built(Component::KubeScheduler, "cp1", Some("0.0.0.0"));
        assert_eq!(
            strings(&listeners(Component::KubeScheduler, &s).unwrap()),
            ["0.0.0.0:10259"]
        );
    }

    #[test]
    fn node_components() {
        let k = built(Component::Kubelet, "w1", None);
        assert!(k.contains(&"--node-ip=192.0.2.21".to_string()));
        assert_eq!(
            strings(&listeners(Component::Kubelet, &k).unwrap()),
            ["0.0.0.0:10250", "127.0.0.1:10248"]
        );
        let k = built(Component::Kubelet, "w1", Some("127.0.0.1"));
        assert_eq!(
            strings(&listeners(Component::Kubelet, &k).unwrap()),
            ["127.0.0.1:10250", "127.0.0.1:10248"]
        );
        let p = built(Component::KubeProxy, "w1", None);
        assert!(p.contains(&"--hostname-override=w1".to_string()));
        assert_eq!(
            strings(&listeners(Component::KubeProxy, &p).unwrap()),
            ["0.0.0.0:10256", "127.0.0.1:10249"]
        );
        let p = built(Component::KubeProxy, "w1", Some("::1"));
        assert_eq!(
            strings(&listeners(Component::KubeProxy, &p).unwrap()),
            ["[::1]:10256", "127.0.0.1:10249"]
        );
    }

    #[test]
    fn defaults_apply_when_flags_are_absent() {
        assert_eq!(
            strings(&listeners(Component::KubeScheduler, &[]).unwrap()),
            ["0.0.0.0:10259"]
        );
        assert_eq!(
            strings(&listeners(Component::Kubelet, &["--read-only-port=10255".into()]).unwrap()),
            ["0.0.0.0:10250", "127.0.0.1:10248", "0.0.0.0:10255"]
        );
        // The last occurrence of a flag wins, as with Go's flag package.
        let a: Vec<String> = vec![
            "--bind-address=0.0.0.0".into(),
            "--bind-address=127.0.0.1".into(),
        ];
        assert_eq!(
            strings(&listeners(Component::KubeScheduler, &a).unwrap()),
            ["127.0.0.1:10259"]
        );
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        let e = listeners(
            Component::KubeScheduler,
            &["--bind-address=localhost".into()],
        )
        .unwrap_err();
        assert_eq!(e, "--bind-address=localhost: not an IP address");
        let e = listeners(Component::Kubelet, &["--port=99999".into()]).unwrap_err();
        assert_eq!(e, "--port=99999: not a port number");
        let e = listeners(Component::Etcd, &[]).unwrap_err();
        assert_eq!(e, "--listen-client-urls is missing");
        let e = listeners(Component::Etcd, &["--listen-client-urls=unix://x".into()]).unwrap_err();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        let e = clients(Component::Etcd, &["--initial-cluster=cp1".into()]).unwrap_err();
        assert!(e.contains("not NAME=URL"), "{e}");
    }

    #[test]
    fn flag_does_not_match_a_longer_name() {
        let a: Vec<String> = vec!["--healthz-bind-address=1.2.3.4".into()];
        assert_eq!(flag(&a, "bind-address"), None);
        assert_eq!(flag(&a, "healthz-bind-address"), Some("1.2.3.4"));
    }

    #[test]
    fn kubeconfig_round_trip() {
        let text = kubeconfig("192.0.2.11".parse().unwrap(), "system:node:w1");
        assert_eq!(
            kubeconfig_server(&text),
            Ok("192.0.2.11:6443".parse().unwrap())
        );
        assert!(kubeconfig_server("kind: Config\n").is_err());
    }

    #[test]
    fn workers_run_kubelet_and_proxy_and_an_etcd_worker_etcd_too() {
        let plan = Plan::new(crate::plan::Counts {
            control_plane: 1,
            workers: 2,
            etcd_workers: 1,
        });
        let of = |n: &str| Component::for_node(plan.node(n).unwrap());
        assert_eq!(of("w2"), [Component::Kubelet, Component::KubeProxy]);
        assert_eq!(
            of("w1"),
            [Component::Etcd, Component::Kubelet, Component::KubeProxy]
        );
        assert_eq!(of("cp1")[0], Component::Etcd);
        // The worker's member joins the control plane's: one cluster of both.
        let dirs = Dirs {
            etcd_data: Path::new("/run/kports-lab/etcd"),
            kubeconfig: Path::new("/k"),
        };
        for n in ["cp1", "w1"] {
            let a = args(Component::Etcd, &plan, plan.node(n).unwrap(), None, dirs);
            assert!(
                a.contains(
                    &"--initial-cluster=cp1=http://192.0.2.11:2380,w1=http://192.0.2.21:2380"
                        .to_string()
                ),
                "{n}: {a:?}"
            );
        }
    }
}
