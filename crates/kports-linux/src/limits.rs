//! Size limits on everything kports reads from a file or a command.
//!
//! kports runs on the busiest node of a cluster, often as root: a file given by mistake
//! (`--catalog /dev/zero`) or a runaway command must not take the node's memory. Inputs whose
//! size a user controls are refused past their [`Limit`], with the limit and the environment
//! variable that raises it; what the kernel writes about one process (its command line, its
//! cgroup) is cut at a fixed size instead, since one odd process must not stop a census.
//! Reads stop at the limit: nothing past it is ever loaded.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A size limit that a user may raise through an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What is limited, as a message names it: `the catalog file`.
    pub what: &'static str,
    /// Bytes allowed unless the environment variable says otherwise.
    pub default: u64,
    /// The environment variable holding another limit in bytes.
    pub env: &'static str,
}

/// A catalog file: the built-in catalog is about 60 KiB.
pub const CATALOG: Limit = Limit {
    what: "the catalog file",
    default: 16 << 20,
    env: "KPORTS_MAX_CATALOG_BYTES",
};

/// The standard output of a command (`nft -j list ruleset`, `iptables-save`): a million rules
/// take a few hundred MiB.
pub const COMMAND_OUTPUT: Limit = Limit {
    what: "the output of",
    default: 1 << 30,
    env: "KPORTS_MAX_COMMAND_OUTPUT_BYTES",
};

/// A `/proc/net` socket table: about 150 bytes a socket, so several million sockets.
pub const PROC_NET: Limit = Limit {
    what: "the socket table",
    default: 1 << 30,
    env: "KPORTS_MAX_PROC_NET_BYTES",
};

/// A configuration file kports reads (firewalld's, ufw's).
pub const CONFIG: Limit = Limit {
    what: "the configuration file",
    default: 4 << 20,
    env: "KPORTS_MAX_CONFIG_BYTES",
};

/// What is kept of a command's standard error (shown in messages only).
pub const STDERR_BYTES: usize = 64 << 10;

/// What is kept of a process's command line; the rest is cut at an argument boundary.
pub const CMDLINE_BYTES: usize = 1 << 20;

/// What is kept of small per-process files (`cgroup`, `children`, `comm`).
pub const SMALL_FILE_BYTES: usize = 64 << 10;

impl Limit {
    /// The limit in force: the environment variable's, if it holds a number of bytes.
    pub fn bytes(&self) -> u64 {
        std::env::var(self.env)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(self.default)
    }
}

/// An input larger than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is larger than {limit} bytes ({}), kports's limit; set {env}=BYTES to raise it",
    human(*limit)
)]
pub struct TooLarge {
    pub what: String,
    pub limit: u64,
    pub env: &'static str,
}

impl TooLarge {
    pub fn new(limit: &Limit, what: impl Into<String>) -> TooLarge {
        TooLarge {
            what: what.into(),
            limit: limit.bytes(),
            env: limit.env,
        }
    }
}

/// `16777216` as `16 MiB`.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Reads all of `r`, refusing past `limit` bytes without reading further.
pub fn read_capped(r: impl Read, limit: u64) -> io::Result<Result<Vec<u8>, u64>> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Ok(Err(limit));
    }
    Ok(Ok(buf))
}

/// Reads the file at `path` (which the caller names in its error), refused (as an `InvalidData` error carrying [`TooLarge`]) when it
/// is larger than `limit`: `/dev/zero` and a 100 MB file are refused after reading the limit.
pub fn read_file(path: &Path, limit: &Limit) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    read_capped(f, limit.bytes())?
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, TooLarge::new(limit, limit.what)))
}

/// [`read_file`] as text; a file that is not UTF-8 is an `InvalidData` error.
pub fn read_text(path: &Path, limit: &Limit) -> io::Result<String> {
    String::from_utf8(read_file(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The first `max` bytes of the file at `path`, and whether there was more.
pub fn read_prefix(path: &Path, max: usize) -> io::Result<(Vec<u8>, bool)> {
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    let cut = buf.len() > max;
    buf.truncate(max);
    Ok((buf, cut))
}

/// The first `max` bytes of a text file at `path`, lossily decoded.
pub fn read_small_text(path: &Path, max: usize) -> io::Result<String> {
    let (b, _) = read_prefix(path, max)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_limit() {
        assert_eq!(read_capped(&b"abcd"[..], 4).unwrap(), Ok(b"abcd".to_vec()));
        assert_eq!(read_capped(&b"abcde"[..], 4).unwrap(), Err(4));
        // An endless input is refused after limit + 1 bytes.
        assert_eq!(read_capped(io::repeat(0), 1 << 20).unwrap(), Err(1 << 20));
        let (b, cut) = read_prefix(Path::new("/dev/zero"), 10).unwrap();
        assert_eq!((b.len(), cut), (10, true));
    }

    #[test]
    fn dev_zero_is_refused_with_the_limit_and_how_to_raise_it() {
        let e = read_file(Path::new("/dev/zero"), &CATALOG).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "the catalog file is larger than 16777216 bytes (16 MiB), kports's limit; \
             set KPORTS_MAX_CATALOG_BYTES=BYTES to raise it"
        );
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human(16 << 20), "16 MiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(1000), "1000 B");
    }
}
