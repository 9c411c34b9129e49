//! Parsers replayed on kernel output captured in a namespace laid out like a control-plane node
//! (`tests/fixtures/cp1`, made with `examples/capture.rs`): etcd on 2379/2380/2381, an API server
//! on [::]:6443 with three clients of 2379 and one of 2380, a UDP listener on 30053, the kernel's
//! VXLAN socket on 8472, a UNIX listener, a bridge with a veth member, a VXLAN device.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::Path;

use kports_core::{Family, Proto, Socket};
use kports_linux::{link, procnet, sockdiag};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cp1")
            .join(name),
    )
    .unwrap()
}

/// The (type, payload) records of a captured dump.
fn records(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = bytes;
    while b.len() >= 6 {
        let kind = u16::from_ne_bytes([b[0], b[1]]);
        let len = u32::from_ne_bytes([b[2], b[3], b[4], b[5]]) as usize;
        out.push((kind, b[6..6 + len].to_vec()));
        b = &b[6 + len..];
    }
    out
}

fn render(sockets: &[Socket]) -> Vec<String> {
    let mut v: Vec<String> = sockets
        .iter()
        .map(|s| {
            format!(
                "{} {} {}:{} {}:{}",
                s.proto.as_str(),
                s.state.ss_name(),
                s.local_address,
                s.local_port,
                s.remote_address,
                if s.remote_port == 0 {
                    "*".to_string()
                } else {
                    "P".to_string()
                }
            )
        })
        .collect();
    v.sort();
    v
}

fn netlink_sockets(file: &str, proto: Proto) -> Vec<Socket> {
    records(&fixture(file))
        .iter()
        .map(|(_, p)| sockdiag::parse_inet(p, proto).unwrap().0)
        .collect()
}

const EXPECTED: &[&str] = &[
    "tcp ESTAB 127.0.0.1:2379 127.0.0.1:P",
    "tcp ESTAB 127.0.0.1:2379 127.0.0.1:P",
    "tcp ESTAB 127.0.0.1:2379 127.0.0.1:P",
    "tcp ESTAB 127.0.0.1:54270 127.0.0.1:P",
    "tcp ESTAB 127.0.0.1:54286 127.0.0.1:P",
    "tcp ESTAB 127.0.0.1:54294 127.0.0.1:P",
    "tcp ESTAB 192.0.2.10:2380 192.0.2.10:P",
    "tcp ESTAB 192.0.2.10:60246 192.0.2.10:P",
    "tcp LISTEN 127.0.0.1:2379 0.0.0.0:*",
    "tcp LISTEN 127.0.0.1:2381 0.0.0.0:*",
    "tcp LISTEN 192.0.2.10:2379 0.0.0.0:*",
    "tcp LISTEN 192.0.2.10:2380 0.0.0.0:*",
    "tcp LISTEN :::6443 :::*",
    "udp UNCONN 0.0.0.0:30053 0.0.0.0:*",
    "udp UNCONN 0.0.0.0:8472 0.0.0.0:*",
];

#[test]
fn sock_diag_capture_parses_to_the_census_ss_showed() {
    let mut all = netlink_sockets("tcp4.nl", Proto::Tcp);
    all.extend(netlink_sockets("tcp6.nl", Proto::Tcp));
    all.extend(netlink_sockets("udp4.nl", Proto::Udp));
    all.extend(netlink_sockets("udp6.nl", Proto::Udp));
    assert_eq!(render(&all), EXPECTED);
    assert!(
        all.iter().all(|s| s.inode != 0),
        "every socket here is held by a file"
    );
}

#[test]
fn proc_net_capture_agrees_with_sock_diag() {
    let mut all = Vec::new();
    for (file, proto, family) in [
        ("proc-net-tcp", Proto::Tcp, Family::Ipv4),
        ("proc-net-tcp6", Proto::Tcp, Family::Ipv6),
        ("proc-net-udp", Proto::Udp, Family::Ipv4),
        ("proc-net-udp6", Proto::Udp, Family::Ipv6),
    ] {
        let text = String::from_utf8(fixture(file)).unwrap();
        let p = procnet::parse_inet(&text, proto, family, sockdiag::ALL_STATES);
        assert_eq!(p.malformed, 0, "{file}");
        all.extend(p.items);
    }
    assert_eq!(render(&all), EXPECTED);
    // Same sockets, same inodes, from both sources.
    let mut nl: Vec<u64> = ["tcp4.nl", "tcp6.nl"]
        .iter()
        .flat_map(|f| netlink_sockets(f, Proto::Tcp))
        .map(|s| s.inode)
        .collect();
    nl.extend(
        ["udp4.nl", "udp6.nl"]
            .iter()
            .flat_map(|f| netlink_sockets(f, Proto::Udp))
            .map(|s| s.inode),
    );
    let mut pr: Vec<u64> = all.iter().map(|s| s.inode).collect();
    nl.sort_unstable();
    pr.sort_unstable();
    assert_eq!(nl, pr);
}

#[test]
fn unix_capture() {
    let recs = records(&fixture("unix.nl"));
    let u: Vec<_> = recs
        .iter()
        .filter_map(|(_, p)| sockdiag::parse_unix(p))
        .collect();
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].kind, u[0].state.ss_name(), u[0].path.as_str()),
        ("stream", "LISTEN", "/tmp/kpt-capture/api.sock")
    );
    let text = String::from_utf8(fixture("proc-net-unix")).unwrap();
    let p = procnet::parse_unix(&text);
    assert_eq!((p.malformed, p.items.len()), (0, 1));
    assert_eq!(
        (p.items[0].inode, p.items[0].path.as_str()),
        (u[0].inode, "/tmp/kpt-capture/api.sock")
    );
}

#[test]
fn rtnetlink_capture() {
    let links: Vec<_> = records(&fixture("link.nl"))
        .iter()
        .filter_map(|(_, p)| link::parse_link(p))
        .collect();
    let addrs: Vec<_> = records(&fixture("addr.nl"))
        .iter()
        .filter_map(|(_, p)| link::parse_addr(p))
        .collect();
    let ifs = link::join(links, addrs);
    let got: Vec<String> = ifs
        .iter()
        .map(|i| {
            let mut a: Vec<String> = i
                .addresses
                .iter()
                .map(|a| format!("{}/{}", a.address, a.prefix_len))
                .collect();
            a.sort();
            format!(
                "{} {} {} master={} port={:?} [{}]",
                i.name,
                i.kind,
                i.state,
                i.master.as_deref().unwrap_or("-"),
                i.tunnel_port,
                a.join(" ")
            )
        })
        .collect();
    let expect_prefix = [
        "lo loopback unknown master=- port=None [127.0.0.1/8 ::1/128]",
        "eth0-peer veth up master=- port=None [",
        "eth0 veth up master=- port=None [192.0.2.10/24 2001:db8::10/64",
        "cni0 bridge up master=- port=None [10.244.0.1/24",
        "veth1 veth up master=- port=None [",
        "veth0 veth up master=cni0 port=None [",
        "flannel.1 vxlan unknown master=- port=Some(8472) [",
    ];
    assert_eq!(got.len(), expect_prefix.len(), "{got:#?}");
    for (g, e) in got.iter().zip(expect_prefix) {
        assert!(g.starts_with(e), "{g} does not start with {e}");
    }
}

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Corrupts a buffer: flipped bytes, a cut, a length field made huge.
fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        match rng.below(3) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(b.len())),
            _ => {
                let i = rng.below(b.len());
                b[i] = 0xff;
            }
        }
    }
    b
}

#[test]
fn parsers_never_panic_on_corrupted_kernel_output() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let netlink: Vec<Vec<u8>> = [
        "tcp4.nl", "tcp6.nl", "udp4.nl", "unix.nl", "link.nl", "addr.nl",
    ]
    .iter()
    .flat_map(|f| records(&fixture(f)).into_iter().map(|(_, p)| p))
    .collect();
    for _ in 0..20_000 {
        let pick = rng.below(netlink.len());
        let m = mutate(&mut rng, &netlink[pick]);
        let _ = sockdiag::parse_inet(&m, Proto::Tcp);
        let _ = sockdiag::parse_unix(&m);
        let _ = link::parse_link(&m);
        let _ = link::parse_addr(&m);
        for msg in kports_linux::netlink::Messages::new(&m) {
            let _ = msg;
        }
    }
    let texts: Vec<Vec<u8>> = [
        "proc-net-tcp",
        "proc-net-tcp6",
        "proc-net-udp",
        "proc-net-unix",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    for _ in 0..5_000 {
        let pick = rng.below(texts.len());
        let m = mutate(&mut rng, &texts[pick]);
        let text = String::from_utf8_lossy(&m);
        for family in [Family::Ipv4, Family::Ipv6] {
            let p = procnet::parse_inet(&text, Proto::Tcp, family, sockdiag::ALL_STATES);
            assert!(p.items.len() + p.malformed <= text.lines().count());
        }
        let _ = procnet::parse_unix(&text);
    }
}
