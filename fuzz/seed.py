#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/TARGET/) from the project's captured
fixtures, in each target's input format. Run from anywhere; the output is committed."""
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")
CP1 = os.path.join(ROOT, "crates/kports-linux/tests/fixtures/cp1")
FW = os.path.join(ROOT, "crates/kports-firewall/tests/fixtures")


def read(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


def seed(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def records(b):
    """(type, payload) records of a captured dump: u16 type, u32 length, payload."""
    out = []
    while len(b) >= 6:
        kind, n = struct.unpack("=HI", b[:6])
        out.append((kind, b[6:6 + n]))
        b = b[6 + n:]
    return out


def datagram(recs):
    """The records as one netlink datagram: each payload behind a 16-byte nlmsghdr."""
    out = b""
    for kind, payload in recs:
        n = 16 + len(payload)
        out += struct.pack("=IHHII", n, kind, 0, 0, 0) + payload
        out += b"\0" * ((4 - n % 4) % 4)
    return out


for which, name in [(0, "proc-net-tcp"), (2, "proc-net-tcp6"), (1, "proc-net-udp"), (3, "proc-net-udp6")]:
    seed("proc_net_inet", name, bytes([which]) + read(CP1, name))
seed("proc_net_unix", "proc-net-unix", read(CP1, "proc-net-unix"))

for which, name in [(0, "tcp4.nl"), (0, "tcp6.nl"), (1, "udp4.nl"), (2, "unix.nl"), (3, "link.nl"), (4, "addr.nl")]:
    recs = records(read(CP1, name))
    if recs:
        seed("netlink", name, bytes([which]) + datagram(recs))

seed("proc_pid", "cmdline", b"kube-apiserver\0--secure-port=6443\0--token=abc\0--etcd-servers=https://127.0.0.1:2379\0")
seed("proc_pid", "cgroup", b"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100.scope\n")
seed("proc_pid", "fd-link", b"socket:[3752449067]")

for name in ["plain", "firewalld", "cilium", "calico"]:
    seed("nft_json", name, read(FW, name + ".nft.json") + b"\0" + read(FW, name + ".nft.txt"))

# iptables_save: the dump's kind, the packet to judge (fuzz/src/lib.rs, chosen_packet: flags,
# port, source address), the dump.
def packet(flags, port, addr):
    return bytes([flags]) + struct.pack(">H", port) + bytes(addr)


API_FROM_ONE = packet(0b0011_0000, 6443, [203, 0, 113, 1])      # TCP from one address, eth0
VXLAN_FROM_ANY = packet(0b0001_1010, 8472, [0, 0, 0, 0])         # UDP from everywhere
NODEPORTS = packet(0b1000_0000, 30000, [198, 51, 100, 7])        # TCP 30000-65535
for which, name, p in [(0, "calico.iptables-nft-save.txt", API_FROM_ONE),
                       (0, "cilium.iptables-nft-save.txt", VXLAN_FROM_ANY),
                       (2, "ufw.iptables-legacy-save.txt", NODEPORTS)]:
    seed("iptables_save", name, bytes([which]) + p + read(FW, name))
# The start of kube-proxy's (260 KB) dump: every kind of line, a tenth of the size.
lines = read(FW, "kube-proxy.iptables-nft-save.txt").split(b"\n")
seed("iptables_save", "kube-proxy-head",
     bytes([0]) + NODEPORTS + b"\n".join(lines[:250]) + b"\nCOMMIT\n")

# The built-in catalog three entries to a seed (about 1.5 KB each), not as one 42 KB file: the
# fuzzer's cost per input grows with its size, and it explores the format as well from small
# inputs (scripts/fuzz caps them at 4 KB).
entries = read(ROOT, "crates/kports-core/catalog/ports.toml").split(b"\n[[port]]\n")[1:]
for i in range(0, len(entries), 3):
    seed("catalog", "builtin-%02d.toml" % (i // 3),
         b"".join(b"[[port]]\n" + e.split(b"\n\n# ---")[0].rstrip() + b"\n\n" for e in entries[i:i + 3]))
seed("catalog", "user.toml", b"""[[port]]
component = "kube-proxy"
protocol = "tcp"
port = "30000-35000"
replaces = "30000-32767"

[[port]]
component = "kube-proxy"
protocol = "tcp"
port = 10256
enabled = false

[[port]]
component = "my-agent"
protocol = "udp"
port = 7946
purpose = "gossip"
roles = ["worker"]
reached_by = ["nodes"]
bind = "any"
""")

seed("component_flags", "etcd", b"etcd --name=cp1 --listen-client-urls=https://127.0.0.1:2379,https://192.0.2.10:2379 --listen-peer-urls https://192.0.2.10:2380 --listen-metrics-urls=http://127.0.0.1:2381")
seed("component_flags", "apiserver", b"kube-apiserver --secure-port=6443 --bind-address=0.0.0.0 --service-node-port-range=30000-32767")
seed("component_flags", "kube-proxy", b"kube-proxy --healthz-bind-address=0.0.0.0:10256 --metrics-bind-address=[::1]:10249")

seed("redact", "kubeadm", b"kubeadm\0join\0--token\0abcdef.0123456789abcdef\0--discovery-token-ca-cert-hash\0sha256:0a1b")
seed("redact", "headers", b"curl\0-u\0bob:pw\0-H\0Authorization: Bearer abc\0https://user:G@127.0.0.1/?access_token=x")
seed("redact", "env", b"env\0DB_PASSWORD=pw\0mysql\0-pS3cret\0postgres://app:pw@127.0.0.1:5432/db")

# Inventories in the three formats (as the inventory tests have them), and kubeconfig files.
seed("inventory", "kports.yaml", b"""# lab
nodes:
  - name: cp1
    address: 192.0.2.11
    address6: 2001:db8::11
    roles: [control-plane, etcd]
    ssh: root@192.0.2.11
  - name: w1
    address: 192.0.2.21
    roles: [worker]
""")
seed("inventory", "kubespray-hosts.yaml", b"""all:
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
    bastion:
      ansible_host: 95.54.0.1
  children:
    kube_control_plane:
      hosts:
        node1:
    kube_node:
      hosts:
        node1:
        node2:
    etcd:
      hosts:
        node1:
    k8s_cluster:
      children:
        kube_control_plane:
        kube_node:
""")
seed("inventory", "kubespray.ini", b"""[all]
node1 ansible_host=95.54.0.12 ip=10.3.0.1 etcd_member_name=etcd1
node2 ansible_host=95.54.0.13 ip=10.3.0.2 access_ip="10.3.0.102"
node3 ansible_host=95.54.0.14

[kube_control_plane]
node1

[etcd]
node1

[kube_node]
node2
node3

[k8s_cluster:children]
kube_control_plane
kube_node
""")
seed("kubeconfig", "kubelet.conf", b"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTi...
    server: https://192.0.2.11:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:w1
  name: system:node:w1@kubernetes
current-context: system:node:w1@kubernetes
kind: Config
""")
seed("kubeconfig", "ipv6-quoted", b"""clusters:
- cluster:
    server: "https://[2001:db8::11]:6443"
""")

# agent_api: what clients send to `kports agent` (the page, Prometheus, kubelet probes, scripts).
AUTH = b"Authorization: Bearer s3cret-token\r\n"
for name, req in [
    ("page", b"GET / HTTP/1.1\r\nHost: cp1:9640\r\n\r\n"),
    ("healthz", b"GET /healthz HTTP/1.1\r\nHost: cp1\r\nUser-Agent: kube-probe/1.34\r\n\r\n"),
    ("readyz-1.0", b"GET /readyz HTTP/1.0\r\n\r\n"),
    ("metrics", b"GET /metrics HTTP/1.1\r\nHost: cp1\r\nAccept: application/openmetrics-text\r\n\r\n"),
    ("report", b"GET /api/v1/report HTTP/1.1\r\nHost: cp1\r\n" + AUTH + b"\r\n"),
    ("report-no-token", b"GET /api/v1/report HTTP/1.1\r\nHost: cp1\r\n\r\n"),
    ("report-wrong-token", b"GET /api/v1/report HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"),
    ("probes-filtered", b"GET /api/v1/probes?peer=w1&status=open%7Cfiltered HTTP/1.1\r\n" + AUTH + b"\r\n"),
    ("probes-bad-query", b"GET /api/v1/probes?port=1&status=up HTTP/1.1\r\n" + AUTH + b"\r\n"),
    ("matrix", b"GET /api/v1/matrix HTTP/1.1\r\n" + AUTH + b"Connection: close\r\n\r\n"),
    ("head", b"HEAD /api/v1/report HTTP/1.1\r\n" + AUTH + b"\r\nGET /healthz HTTP/1.1\r\n\r\n"),
    ("post-body", b"POST /api/v1/report HTTP/1.1\r\n" + AUTH + b"Content-Length: 5\r\n\r\nhello"),
    ("chunked", b"GET /api/v1/probes HTTP/1.1\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("pipelined", b"GET /healthz HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\nGET /api/v1/probes?peer=w1 HTTP/1.1\r\n" + AUTH + b"\r\n"),
]:
    seed("agent_api", name, req)
