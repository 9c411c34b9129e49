//! A generator of kube-proxy's iptables rules (iptables mode, as kube-proxy 1.29 writes them)
//! for a cluster of any size: shared by the fixture tests, the system tests and the benchmark.
//!
//! Every service gets a cluster IP rule, a masquerade rule and one KUBE-SEP chain per endpoint;
//! every third service is a NodePort (KUBE-NODEPORTS -> KUBE-EXT-*); every tenth has no endpoints
//! (a REJECT in filter KUBE-SERVICES, and for NodePorts in KUBE-EXTERNAL-SERVICES); every
//! twentieth NodePort is a LoadBalancer with a health check node port (ACCEPT in filter
//! KUBE-NODEPORTS). The filter table's INPUT hooks are the real ones.

use std::fmt::Write as _;

/// The NodePort of service `i` (30000-32767, distinct for the first 2768 services).
pub fn node_port(i: usize) -> u16 {
    30000 + (i * 7 % 2768) as u16
}

/// Whether service `i` has no endpoints.
pub fn no_endpoints(i: usize) -> bool {
    i % 10 == 3
}

pub fn is_node_port(i: usize) -> bool {
    i % 3 == 0
}

/// The health check node port of service `i`, when it has one.
pub fn health_port(i: usize) -> Option<u16> {
    (is_node_port(i) && i % 20 == 0 && !no_endpoints(i)).then(|| 32767 - (i / 20 % 500) as u16)
}

fn hash(kind: &str, i: usize, j: usize) -> String {
    // 16 characters of base32, as kube-proxy's chain names have.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ kind.len() as u64;
    let mut s = String::with_capacity(16);
    for _ in 0..16 {
        s.push(A[(x & 31) as usize] as char);
        x = x.rotate_right(5).wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    s
}

/// kube-proxy's `iptables-save` output with about `rules` rules in all.
pub fn save(rules: usize) -> String {
    const EPS: usize = 3;
    // Rules per service, roughly: 2 + 3 per endpoint + 3 for a NodePort.
    let services = (rules / (2 + 3 * EPS + 1)).max(1);
    let mut f = String::new();
    let mut n = String::new();
    let mut ndecl = String::new();
    f.push_str(
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
         -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A INPUT -j KUBE-FIREWALL\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -j KUBE-FIREWALL\n\
         -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    );
    n.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    for i in 0..services {
        let ns = format!("ns{}", i % 40);
        let svc = format!("{ns}/svc{i}:http");
        let ip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        let port = 80 + (i % 5) as u16 * 1000;
        let np = node_port(i);
        if no_endpoints(i) {
            let _ = writeln!(
                f,
                "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{svc} has no endpoints\" -m tcp --dport {port} -j REJECT --reject-with icmp-port-unreachable"
            );
            if is_node_port(i) {
                let _ = writeln!(
                    f,
                    "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"{svc} has no endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport {np} -j REJECT --reject-with icmp-port-unreachable"
                );
            }
            continue;
        }
        let svc_chain = format!("KUBE-SVC-{}", hash("svc", i, 0));
        let _ = writeln!(ndecl, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            n,
            "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{svc} cluster IP\" -m tcp --dport {port} -j {svc_chain}"
        );
        let _ = writeln!(
            n,
            "-A {svc_chain} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m comment --comment \"{svc} cluster IP\" -m tcp --dport {port} -j KUBE-MARK-MASQ"
        );
        for j in 0..EPS {
            let sep = format!("KUBE-SEP-{}", hash("sep", i, j + 1));
            let ep = format!(
                "10.244.{}.{}",
                (i * EPS + j) / 250 % 250,
                (i * EPS + j) % 250 + 2
            );
            let _ = writeln!(ndecl, ":{sep} - [0:0]");
            if j + 1 < EPS {
                let p = 1.0 / (EPS - j) as f64;
                let _ = writeln!(
                    n,
                    "-A {svc_chain} -m comment --comment \"{svc} -> {ep}:8080\" -m statistic --mode random --probability {p:.11} -j {sep}"
                );
            } else {
                let _ = writeln!(
                    n,
                    "-A {svc_chain} -m comment --comment \"{svc} -> {ep}:8080\" -j {sep}"
                );
            }
            let _ = writeln!(
                n,
                "-A {sep} -s {ep}/32 -m comment --comment \"{svc}\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                n,
                "-A {sep} -p tcp -m comment --comment \"{svc}\" -m tcp -j DNAT --to-destination {ep}:8080"
            );
        }
        if is_node_port(i) {
            let ext = format!("KUBE-EXT-{}", hash("ext", i, 0));
            let _ = writeln!(ndecl, ":{ext} - [0:0]");
            let _ = writeln!(
                n,
                "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{svc}\" -m tcp --dport {np} -j {ext}"
            );
            let _ = writeln!(
                n,
                "-A {ext} -m comment --comment \"masquerade traffic for {svc} external destinations\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(n, "-A {ext} -j {svc_chain}");
            if let Some(hp) = health_port(i) {
                let _ = writeln!(
                    f,
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{svc} health check node port\" -m tcp --dport {hp} -j ACCEPT"
                );
            }
        }
    }
    n.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    format!(
        "# Generated by iptables-nft-save v1.8.9 (nf_tables)\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-KUBELET-CANARY - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
         :KUBE-PROXY-CANARY - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n{f}COMMIT\n\
         *nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-KUBELET-CANARY - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-PROXY-CANARY - [0:0]\n:KUBE-SERVICES - [0:0]\n\
         {ndecl}{n}COMMIT\n"
    )
}
