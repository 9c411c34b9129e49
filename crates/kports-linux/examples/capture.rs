//! Captures the raw netlink answers and /proc/net files of the current network namespace into
//! a directory, as fixtures for the parser tests:
//!
//!     ip netns exec NS cargo run -p kports-linux --example capture -- DIR
//!
//! Each `.nl` file holds the messages of one dump as (u16 type, u32 length, payload) records
//! in native byte order.

use std::io::Write;
use std::path::Path;

use kports_linux::netlink::Netlink;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: capture DIR"))?;
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut diag = Netlink::open(libc::NETLINK_SOCK_DIAG)?;
    for (name, family, proto) in [
        ("tcp4", libc::AF_INET, libc::IPPROTO_TCP),
        ("tcp6", libc::AF_INET6, libc::IPPROTO_TCP),
        ("udp4", libc::AF_INET, libc::IPPROTO_UDP),
        ("udp6", libc::AF_INET6, libc::IPPROTO_UDP),
    ] {
        let mut req = [0u8; 56];
        req[0] = family as u8;
        req[1] = proto as u8;
        req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        capture(&mut diag, 20, &req, &dir.join(format!("{name}.nl")))?;
    }
    let mut unix = [0u8; 24];
    unix[0] = libc::AF_UNIX as u8;
    unix[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    unix[12..16].copy_from_slice(&5u32.to_ne_bytes());
    capture(&mut diag, 20, &unix, &dir.join("unix.nl"))?;
    let mut route = Netlink::open(libc::NETLINK_ROUTE)?;
    capture(&mut route, 18, &[0u8; 16], &dir.join("link.nl"))?;
    capture(&mut route, 22, &[0u8; 8], &dir.join("addr.nl"))?;
    for f in ["tcp", "tcp6", "udp", "udp6", "unix"] {
        std::fs::copy(
            Path::new("/proc/thread-self/net").join(f),
            dir.join(format!("proc-net-{f}")),
        )?;
    }
    Ok(())
}

fn capture(nl: &mut Netlink, kind: u16, req: &[u8], path: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    nl.dump(kind, req, |k, payload| {
        out.extend_from_slice(&k.to_ne_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
        out.extend_from_slice(payload);
    })?;
    std::fs::File::create(path)?.write_all(&out)
}
