//! Linux collectors for kports: everything that reads the kernel lives here.
//!
//! - [`census`]: sockets (netlink sock_diag, or `/proc/net`) joined with their owners;
//! - [`census::interfaces`]: interfaces and addresses through rtnetlink;
//! - [`procfs`]: the `/proc/*/fd` walk that finds which process holds which socket;
//! - [`netns`]: finding and entering network namespaces;
//! - [`settings`]: the node's own network settings (sysctls, modules, identity, routes, links);
//! - [`firewall`]: the node's nftables and iptables rulesets, read through [`runner`], the one
//!   way kports runs an external command.
//!
//! Parsers are separate from IO (`parse_*` functions over bytes or text) so that captured kernel
//! output is replayed in tests without root.

pub mod census;
pub mod firewall;
pub mod limits;
pub mod link;
pub mod neigh;
pub mod netlink;
pub mod netns;
pub mod procfs;
pub mod procnet;
pub mod runner;
pub mod settings;
pub mod sockdiag;

use std::io;

/// Errors that stop a collection; anything partial is a `Warning` instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink sock_diag is unavailable ({0}); try --source proc")]
    NoSockDiag(#[source] io::Error),
}

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether the error comes from missing permission (for the exit code and the hint).
    pub fn is_permission(&self) -> bool {
        let e = match self {
            Error::Io { source, .. } | Error::NoSockDiag(source) => source,
        };
        matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
    }
}

/// The host name (from the UTS namespace of the caller).
pub fn hostname() -> String {
    limits::read_small_text(
        std::path::Path::new("/proc/sys/kernel/hostname"),
        limits::SMALL_FILE_BYTES,
    )
    .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string())
}
