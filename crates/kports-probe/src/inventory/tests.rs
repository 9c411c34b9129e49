//! Inventories in each format, and every way they can be wrong.

use super::*;

fn ok(text: &str) -> Inventory {
    match parse(text, "hosts.yaml") {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

fn err(text: &str) -> String {
    match parse(text, "hosts.yaml") {
        Ok(i) => panic!("accepted: {i:?}"),
        Err(e) => e.to_string(),
    }
}

/// `name address [address6] roles [ssh]`, one node per line.
fn summary(inv: &Inventory) -> Vec<String> {
    inv.nodes
        .iter()
        .map(|n| {
            let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
            let mut s = format!("{} {}", n.name, n.address);
            if let Some(a6) = n.address6 {
                s.push_str(&format!(" {a6}"));
            }
            s.push_str(&format!(" [{}]", roles.join(",")));
            if let Some(ssh) = &n.ssh {
                s.push_str(&format!(" ssh={ssh}"));
            }
            s
        })
        .collect()
}

#[test]
fn kports_format() {
    let inv = ok("# lab\nnodes:
  - name: cp1
    address: 192.0.2.11
    address6: 2001:db8::11
    roles: [control-plane, etcd]
    ssh: root@192.0.2.11
  - name: w1
    address: 192.0.2.21
    roles: [worker]
");
    assert_eq!(inv.format, Format::Kports);
    assert_eq!(
        summary(&inv),
        [
            "cp1 192.0.2.11 2001:db8::11 [control-plane,etcd] ssh=root@192.0.2.11",
            "w1 192.0.2.21 [worker]",
        ]
    );
    assert_eq!(
        inv.nodes[0].addresses(),
        vec![
            "192.0.2.11"
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(0.into())),
            "2001:db8::11"
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(0.into())),
        ]
    );
}

#[test]
fn kports_format_errors_name_the_line() {
    let bad_addr = "nodes:\n  - name: cp1\n    address: cp1.example\n    roles: [worker]\n";
    assert_eq!(
        err(bad_addr),
        "hosts.yaml:3: `cp1.example` is not an IP address (kports needs addresses, not host names)"
    );
    let dup = "nodes:\n  - {name: a, address: 192.0.2.1}\n  - {name: a, address: 192.0.2.2}\n";
    assert_eq!(err(dup), "hosts.yaml:3: node `a` is listed twice");
    let six = "nodes:\n  - name: a\n    address: 192.0.2.1\n    address6: 192.0.2.2\n";
    assert_eq!(err(six), "hosts.yaml:4: address6 `192.0.2.2` is not IPv6");
    let role = "nodes:\n  - name: a\n    address: 192.0.2.1\n    roles: [master]\n";
    let m = err(role);
    assert!(m.starts_with("hosts.yaml:4:"), "{m}");
    assert!(m.contains("master"), "{m}");
    let field = "nodes:\n  - name: a\n    adress: 192.0.2.1\n";
    let m = err(field);
    assert!(
        m.starts_with("hosts.yaml:3:") && m.contains("adress"),
        "{m}"
    );
    assert_eq!(err("nodes: []\n"), "hosts.yaml: no nodes");
    let m = err("nodes:\n  - name: [unclosed\n");
    assert!(m.starts_with("hosts.yaml:"), "{m}");
}

/// kubespray's own sample, as `inventory/sample/hosts.yaml` has it.
const KUBESPRAY: &str = "all:
  hosts:
    node1:
      ansible_host: 95.54.0.12
      ip: 10.3.0.1
      access_ip: 10.3.0.1
    node2:
      ansible_host: 95.54.0.13
      ip: 10.3.0.2
      access_ip: 10.3.0.2
      ip6: fd00::2
    node3:
      ansible_host: 95.54.0.14
      ansible_user: ubuntu
      ip: 10.3.0.3
    bastion:
      ansible_host: 95.54.0.1
  children:
    kube_control_plane:
      hosts:
        node1:
        node2:
    kube_node:
      hosts:
        node1:
        node2:
        node3:
    etcd:
      hosts:
        node1:
    k8s_cluster:
      children:
        kube_control_plane:
        kube_node:
    calico_rr:
      hosts: {}
";

#[test]
fn kubespray_yaml() {
    let inv = ok(KUBESPRAY);
    assert_eq!(inv.format, Format::KubesprayYaml);
    assert_eq!(
        summary(&inv),
        [
            "node1 10.3.0.1 [control-plane,worker,etcd] ssh=95.54.0.12",
            "node2 10.3.0.2 fd00::2 [control-plane,worker] ssh=95.54.0.13",
            "node3 10.3.0.3 [worker] ssh=ubuntu@95.54.0.14",
        ]
    );
    assert_eq!(inv.skipped, ["bastion"]);
}

#[test]
fn kubespray_yaml_older_names_nested_groups_and_vars_in_groups() {
    let inv = ok("all:
  children:
    kube-master:
      children:
        masters_dc1:
          hosts:
            m1: {ansible_host: 192.0.2.1, ansible_port: 2222}
    kube-node:
      hosts:
        w1:
          ansible_host: 192.0.2.2
          access_ip: 192.0.2.102
    etcd:
      children:
        kube-master:
");
    assert_eq!(
        summary(&inv),
        [
            "m1 192.0.2.1 [control-plane,etcd] ssh=192.0.2.1",
            "w1 192.0.2.102 [worker] ssh=192.0.2.2",
        ]
    );
}

#[test]
fn kubespray_yaml_errors() {
    let m = err(
        "all:\n  hosts:\n    node1:\n      ip: '{{ lookup(\"x\") }}'\n  children:\n    kube_node:\n      hosts:\n        node1:\n",
    );
    assert!(m.starts_with("hosts.yaml:4: host `node1`: ip:"), "{m}");
    let m = err(
        "all:\n  hosts:\n    node1:\n  children:\n    kube_node:\n      hosts:\n        node1:\n",
    );
    assert_eq!(
        m,
        "hosts.yaml: host `node1` has no access_ip, ip or ansible_host"
    );
    // A cycle of groups ends.
    let inv = ok(
        "all:\n  children:\n    a:\n      children:\n        kube_node:\n    kube_node:\n      children:\n        a:\n      hosts:\n        w: {ip: 192.0.2.5}\n",
    );
    assert_eq!(summary(&inv), ["w 192.0.2.5 [worker]"]);
}

#[test]
fn kubespray_ini() {
    let inv = ok("# kubespray inventory.ini
[all]
node1 ansible_host=95.54.0.12 ip=10.3.0.1 etcd_member_name=etcd1
node2 ansible_host=95.54.0.13 ip=10.3.0.2 access_ip=\"10.3.0.102\"
node3 ansible_host=95.54.0.14

[kube_control_plane]
node1

[etcd]
node1

[kube_node]
node2
node3

[calico_rr]

[k8s_cluster:children]
kube_control_plane
kube_node
calico_rr

[all:vars]
ansible_user=root
");
    assert_eq!(inv.format, Format::KubesprayIni);
    assert_eq!(
        summary(&inv),
        [
            "node1 10.3.0.1 [control-plane,etcd] ssh=95.54.0.12",
            "node2 10.3.0.102 [worker] ssh=95.54.0.13",
            "node3 95.54.0.14 [worker] ssh=95.54.0.14",
        ]
    );
    let m = err("[all]\nnode1 ip 10.0.0.1\n[kube_node]\nnode1\n");
    assert_eq!(m, "hosts.yaml:2: `ip`: host variables are key=value");
    let m = err("[kube_node]\nnode1 ip=10.0.0.300\n");
    assert!(m.starts_with("hosts.yaml:2: host `node1`: ip:"), "{m}");
    let m = err("[kube_node:weird]\n");
    assert!(m.starts_with("hosts.yaml:1:"), "{m}");
}

#[test]
fn unknown_and_oversized() {
    let m = err("servers:\n  - a\n");
    assert!(m.contains("neither a kports inventory"), "{m}");
    let big = format!("nodes:\n{}", " ".repeat(MAX_BYTES as usize));
    assert!(err(&big).contains("larger than 4 MiB"));
}

#[test]
fn too_many_nodes() {
    let mut text = String::from("nodes:\n");
    for i in 0..=MAX_NODES {
        text.push_str(&format!(
            "  - {{name: n{i}, address: 192.0.2.{}}}\n",
            i % 250 + 1
        ));
    }
    assert!(err(&text).contains("more than 10000 nodes"));
}

#[test]
fn read_refuses_big_files() -> std::io::Result<()> {
    let dir = std::env::temp_dir().join(format!("kports-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let p = dir.join("big.yaml");
    let f = std::fs::File::create(&p)?;
    f.set_len(MAX_BYTES + 10)?;
    let r = read(&p);
    std::fs::remove_dir_all(&dir)?;
    assert!(r.is_err_and(|e| e.message.contains("larger than")));
    assert!(read(Path::new("/nonexistent/hosts.yaml")).is_err_and(|e| e.line.is_none()));
    Ok(())
}

/// Found by fuzzing: YAML takes a lone carriage return for a line break, so the parser named
/// line 63 of a five-line file. Such a file is refused at the line of its first lone `\r`;
/// `\r\n` line ends are read as usual.
#[test]
fn a_lone_carriage_return_is_refused_at_its_line() {
    let crash = format!(
        "all:\n  (osts:\n    node1:\n      ansible_en:\n   {} kube_controlsi ip: 10.a:\n    node1:\n   ] 3.0 .1",
        "\r".repeat(58)
    );
    let e = parse(&crash, "hosts.yaml").unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(
        e.message.contains("carriage return without a line feed"),
        "{e}"
    );
    let crlf =
        "nodes:\r\n  - name: cp1\r\n    address: 192.0.2.11\r\n    roles: [control-plane]\r\n";
    assert_eq!(ok(crlf).nodes.len(), 1);
    let e = parse("nodes:\r  - name: cp1\n", "x.yaml").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}
