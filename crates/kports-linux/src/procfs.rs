//! Process attribution: which processes hold which sockets, from one walk of `/proc/*/fd`.
//!
//! The walk is what `ss -p` does, without its cost: each process's fd directory is opened once
//! with `getdents64` into a reused buffer, and its links read with `readlinkat` relative to it;
//! found sockets go into one sorted list searched by binary search (ss chains them in 256 hash
//! buckets); the pids are spread over worker threads; and when only some
//! sockets are wanted (listeners), the walk stops once each has an owner and then visits only
//! the children of those owners, which share sockets inherited across fork.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kports_core::ProcessInfo;

use crate::limits;

/// A fast hasher for socket inodes, which are already well spread.
#[derive(Debug, Default, Clone, Copy)]
pub struct InodeHasher(u64);

impl Hasher for InodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type InodeMap<V> = HashMap<u64, V, BuildHasherDefault<InodeHasher>>;

/// Which sockets the walk should find owners for.
#[derive(Debug, Clone)]
pub enum Want {
    /// Every socket any process holds.
    All,
    /// Only these inodes; the walk may stop once each has an owner.
    Only(HashSet<u64>),
}

/// The result of a walk.
#[derive(Debug, Default)]
pub struct Owners {
    /// (socket inode, pid holding it), sorted, no duplicates. A sorted vector rather than a
    /// map: 16 bytes a socket, which matters at hundreds of thousands of sockets.
    pairs: Vec<(u64, u32)>,
    /// Pids whose fd directory could not be read for lack of permission.
    pub denied: Vec<u32>,
    /// Whether every process was visited (false after an early stop).
    pub exhaustive: bool,
}

/// Walks `root` (normally `/proc`) with `threads` workers.
pub fn walk(root: &Path, want: &Want, threads: usize) -> io::Result<Owners> {
    let pids = list_pids(root)?;
    let wanted: Option<InodeMap<usize>> = match want {
        Want::All => None,
        Want::Only(set) => Some(set.iter().enumerate().map(|(i, &ino)| (ino, i)).collect()),
    };
    let found: Vec<AtomicBool> = (0..wanted.as_ref().map_or(0, |w| w.len()))
        .map(|_| AtomicBool::new(false))
        .collect();
    let remaining = AtomicUsize::new(found.len());
    let stop = AtomicBool::new(wanted.as_ref().is_some_and(|w| w.is_empty()));
    let next = AtomicUsize::new(0);
    let denied = Mutex::new(Vec::new());
    let threads = threads.clamp(1, 16);

    let per_thread: Vec<Vec<(u64, u32)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut hits = Vec::new();
                    let mut scratch = Scratch::new();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&pid) = pids.get(i) else { break };
                        let start = hits.len();
                        match sockets_of(root, pid, &mut scratch, &mut hits) {
                            Ok(()) => {}
                            Err(e) if is_denied(&e) => lock(&denied).push(pid),
                            // Exited mid-scan: skip quietly.
                            Err(_) => continue,
                        }
                        if let Some(w) = &wanted {
                            hits.retain(|(ino, _)| w.contains_key(ino));
                            for &(ino, _) in &hits[start.min(hits.len())..] {
                                let idx = w[&ino];
                                if !found[idx].swap(true, Ordering::Relaxed)
                                    && remaining.fetch_sub(1, Ordering::Relaxed) == 1
                                {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    hits
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });

    let mut pairs = Vec::with_capacity(per_thread.iter().map(Vec::len).sum());
    for v in per_thread {
        pairs.extend(v);
    }
    let mut owners = Owners {
        pairs,
        denied: Vec::new(),
        exhaustive: !stop.load(Ordering::Relaxed),
    };
    owners.normalise();
    if !owners.exhaustive {
        // Sockets inherited across fork are held by the owners' descendants too.
        let mut scratch = Scratch::new();
        let mut todo: Vec<u32> = owners.pairs.iter().map(|&(_, pid)| pid).collect();
        let mut seen: HashSet<u32> = todo.iter().copied().collect();
        let mut extra = Vec::new();
        while let Some(pid) = todo.pop() {
            for child in children(root, pid) {
                if seen.insert(child) {
                    todo.push(child);
                    let _ = sockets_of(root, child, &mut scratch, &mut extra);
                }
            }
        }
        extra.retain(|&(ino, _)| !owners.pids(ino).is_empty());
        owners.pairs.extend(extra);
        owners.normalise();
    }
    owners.denied = denied.into_inner().unwrap_or_else(|e| e.into_inner());
    owners.denied.sort_unstable();
    Ok(owners)
}

impl Owners {
    /// Pids holding the socket `inode`, ascending.
    pub fn pids(&self, inode: u64) -> &[(u64, u32)] {
        let start = self.pairs.partition_point(|&(i, _)| i < inode);
        let end = start + self.pairs[start..].partition_point(|&(i, _)| i == inode);
        &self.pairs[start..end]
    }

    /// How many distinct sockets have an owner.
    pub fn sockets(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for &(i, _) in &self.pairs {
            if last != Some(i) {
                n += 1;
                last = Some(i);
            }
        }
        n
    }

    fn normalise(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self.pairs.shrink_to_fit();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Numeric entries of `root`, ascending.
pub fn list_pids(root: &Path) -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = fs::read_dir(root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Buffers one walker thread reuses for every process.
struct Scratch {
    link: [u8; 64],
    dirents: Vec<u8>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            link: [0; 64],
            dirents: vec![0; DIRENT_BUF],
        }
    }
}

/// Appends `(inode, pid)` for every socket `pid` holds.
fn sockets_of(
    root: &Path,
    pid: u32,
    scratch: &mut Scratch,
    out: &mut Vec<(u64, u32)>,
) -> io::Result<()> {
    let dir = open_dir(&root.join(pid.to_string()).join("fd"))?;
    let link = &mut scratch.link;
    dir.each_name(&mut scratch.dirents, |name| {
        // SAFETY: dir's fd is open for the whole walk; name is NUL-terminated; link is a
        // writable buffer whose length is passed.
        let n = unsafe {
            libc::readlinkat(
                dir.fd.as_raw_fd(),
                name.as_ptr(),
                link.as_mut_ptr().cast(),
                link.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            // Listing the directory may be allowed where reading its links is not (ptrace
            // access mode): that is a permission problem, not a process without sockets.
            if is_denied(&e) {
                return Err(e);
            }
            return Ok(()); // closed since the listing
        }
        if let Some(ino) = socket_inode(&link[..n as usize]) {
            out.push((ino, pid));
        }
        Ok(())
    })
}

/// CAP_NET_ADMIN's bit in a capability set.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process holds CAP_NET_ADMIN in its effective set (`CapEff` of
/// `/proc/self/status`); `None` when that cannot be read.
pub fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    capability(&status, "CapEff:", CAP_NET_ADMIN)
}

/// Bit `bit` of the capability set `field` (`CapEff:`) of a `/proc/PID/status` text.
fn capability(status: &str, field: &str, bit: u32) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix(field))?.trim();
    let set = u64::from_str_radix(hex, 16).ok()?;
    Some(set & (1u64 << bit) != 0)
}

/// `socket:[12345]` -> 12345.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Child pids of every thread of `pid` (needs CONFIG_PROC_CHILDREN; none otherwise).
fn children(root: &Path, pid: u32) -> Vec<u32> {
    let tasks = root.join(pid.to_string()).join("task");
    let Ok(rd) = fs::read_dir(&tasks) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in rd.flatten() {
        if let Ok(s) = limits::read_small_text(&t.path().join("children"), limits::SMALL_FILE_BYTES)
        {
            out.extend(
                s.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// An open directory whose entries are read with getdents through libc's readdir.
struct Dir {
    fd: OwnedFd,
}

fn open_dir(path: &Path) -> io::Result<Dir> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Dir { fd })
}

/// Bytes of directory entries read per `getdents64` call: about a thousand fd entries.
const DIRENT_BUF: usize = 32 * 1024;

impl Dir {
    /// Calls `each` with every entry name but `.` and `..`, reading the directory in batches
    /// into `buf` with `getdents64`: no allocation per entry, which matters at 200k fds.
    fn each_name(
        &self,
        buf: &mut [u8],
        mut each: impl FnMut(&CStr) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            // SAFETY: getdents64 writes at most buf.len() bytes into buf, which is live and
            // writable; the fd is an open directory we own.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(());
            }
            for name in dirents(&buf[..n as usize])? {
                let b = name.to_bytes();
                if b != b"." && b != b".." {
                    each(name)?;
                }
            }
        }
    }
}

/// Names in a buffer of `struct linux_dirent64` records: inode (8 bytes), offset (8), record
/// length (2), type (1), then the NUL-terminated name, padded to the record length.
fn dirents(buf: &[u8]) -> io::Result<impl Iterator<Item = &CStr>> {
    const NAME_AT: usize = 19;
    let mut names = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let reclen = buf
            .get(at + 16..at + 18)
            .map_or(0, |b| usize::from(u16::from_ne_bytes([b[0], b[1]])));
        let Some(rec) = buf.get(at..at + reclen).filter(|_| reclen > NAME_AT) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed directory entry",
            ));
        };
        if let Ok(name) = CStr::from_bytes_until_nul(&rec[NAME_AT..]) {
            names.push(name);
        }
        at += reclen;
    }
    Ok(names.into_iter())
}

/// Reads what kports shows about a process. `None` if it exited meanwhile.
pub fn process_info(root: &Path, pid: u32) -> Option<ProcessInfo> {
    let dir: PathBuf = root.join(pid.to_string());
    let comm = limits::read_small_text(&dir.join("comm"), limits::SMALL_FILE_BYTES)
        .ok()?
        .trim_end_matches('\n')
        .to_string();
    let exe = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let argv = limits::read_prefix(&dir.join("cmdline"), limits::CMDLINE_BYTES)
        .map(|(b, cut)| cut_cmdline(&b, cut))
        .unwrap_or_default();
    let cgroup =
        limits::read_small_text(&dir.join("cgroup"), limits::SMALL_FILE_BYTES).unwrap_or_default();
    Some(ProcessInfo {
        pid,
        comm,
        exe,
        argv,
        cgroup,
    })
}

/// What ends a command line longer than [`limits::CMDLINE_BYTES`].
pub const CMDLINE_CUT: &str = "[command line cut at 1 MiB]";

/// The arguments of a command line read up to the limit: when it was cut, the last, partial
/// argument is dropped (half a `https://user:password@host` would escape redaction) and
/// [`CMDLINE_CUT`] says so.
pub fn cut_cmdline(b: &[u8], cut: bool) -> Vec<String> {
    if !cut {
        return split_cmdline(b);
    }
    let whole = b
        .iter()
        .rposition(|&c| c == 0)
        .map_or(&b[..0], |i| &b[..=i]);
    let mut argv = split_cmdline(whole);
    argv.push(CMDLINE_CUT.to_string());
    argv
}

/// `/proc/PID/cmdline` is NUL-separated; a process that rewrote its title may use spaces.
pub fn split_cmdline(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(b"\0").unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_read_from_a_status_text() {
        let status = "Name:\tkports\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(capability(status, "CapEff:", CAP_NET_ADMIN), Some(true));
        assert_eq!(capability(status, "CapInh:", CAP_NET_ADMIN), Some(false));
        assert_eq!(capability(status, "CapEff:", 21), Some(false));
        assert_eq!(capability("CapEff:\tzz\n", "CapEff:", 12), None);
        assert_eq!(capability("Name:\tx\n", "CapEff:", 12), None);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[3752449067]"), Some(3752449067));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12a]"), None);
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        // u64::MAX is the largest inode; one more is refused, neither wrapped nor a panic.
        assert_eq!(
            socket_inode(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        assert_eq!(socket_inode(b"socket:[18446744073709551616]"), None);
        assert_eq!(socket_inode(b"socket:[99999999999999999999]"), None);
    }

    #[test]
    fn a_cut_command_line_drops_its_partial_argument() {
        assert_eq!(cut_cmdline(b"a\0--b=1\0", false), ["a", "--b=1"]);
        assert_eq!(
            cut_cmdline(b"curl\0https://u:pass", true),
            ["curl", CMDLINE_CUT]
        );
        assert_eq!(cut_cmdline(b"https://u:pa", true), [CMDLINE_CUT]);
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(split_cmdline(b"etcd\0--name=cp1\0"), ["etcd", "--name=cp1"]);
        assert!(split_cmdline(b"").is_empty());
        assert_eq!(
            split_cmdline(b"nginx: worker process"),
            ["nginx: worker process"]
        );
    }

    /// A captured fd tree: a fake /proc with symlinks, as the walk sees it.
    fn fake_proc(entries: &[(u32, &[&str])]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (pid, links) in entries {
            let fd = d.path.join(pid.to_string()).join("fd");
            fs::create_dir_all(&fd).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, fd.join(i.to_string())).unwrap();
            }
        }
        fs::create_dir_all(d.path.join("self")).unwrap();
        d
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "kports-procfs-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[test]
    fn walk_maps_inodes_to_all_holders() {
        let d = fake_proc(&[
            (10, &["socket:[100]", "/dev/null", "socket:[101]"]),
            (11, &["socket:[100]", "pipe:[5]"]),
            (12, &["anon_inode:[eventfd]"]),
        ]);
        for threads in [1, 2, 3] {
            let o = walk(&d.path, &Want::All, threads).unwrap();
            assert!(o.exhaustive);
            assert_eq!(o.pids(100), [(100, 10), (100, 11)]);
            assert_eq!(o.pids(101), [(101, 10)]);
            assert_eq!(o.pids(99), []);
            assert_eq!(o.sockets(), 2);
        }
    }

    #[test]
    fn wanted_walk_keeps_only_wanted() {
        let d = fake_proc(&[
            (10, &["socket:[100]", "socket:[101]"]),
            (11, &["socket:[102]"]),
        ]);
        let o = walk(&d.path, &Want::Only([101, 102].into()), 1).unwrap();
        assert_eq!(o.sockets(), 2);
        assert_eq!(o.pids(102), [(102, 11)]);
    }

    /// One `linux_dirent64` record as the kernel lays it out, padded to 8 bytes.
    fn dirent(name: &str) -> Vec<u8> {
        let len = (19 + name.len() + 1).div_ceil(8) * 8;
        let mut r = vec![0u8; len];
        r[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
        r[18] = libc::DT_LNK;
        r[19..19 + name.len()].copy_from_slice(name.as_bytes());
        r
    }

    #[test]
    fn dirent_records_are_split_by_their_length() {
        let mut buf = dirent(".");
        buf.extend(dirent("3"));
        buf.extend(dirent("12345"));
        let names: Vec<&str> = dirents(&buf)
            .unwrap()
            .map(|n| n.to_str().unwrap())
            .collect();
        assert_eq!(names, [".", "3", "12345"]);
    }

    #[test]
    fn a_truncated_dirent_record_is_an_error() {
        let mut buf = dirent("3");
        buf.extend(&dirent("4")[..20]);
        assert!(dirents(&buf).is_err());
        let mut zero = dirent("3");
        zero[16..18].copy_from_slice(&0u16.to_ne_bytes());
        assert!(dirents(&zero).is_err());
    }

    #[test]
    fn a_large_fd_directory_is_read_in_several_batches() {
        // More names than one 32 KiB getdents64 batch holds.
        let links: Vec<String> = (0..3000)
            .map(|i| format!("socket:[{}]", 1000 + i))
            .collect();
        let refs: Vec<&str> = links.iter().map(String::as_str).collect();
        let d = fake_proc(&[(10, &refs)]);
        let o = walk(&d.path, &Want::All, 2).unwrap();
        assert_eq!(o.sockets(), 3000);
        assert_eq!(o.pids(3999), [(3999, 10)]);
    }

    #[test]
    fn missing_pid_directory_is_skipped() {
        let d = fake_proc(&[(10, &["socket:[100]"])]);
        fs::create_dir_all(d.path.join("99")).unwrap(); // a process with no fd dir: exited
        let o = walk(&d.path, &Want::All, 2).unwrap();
        assert_eq!(o.pids(100), [(100, 10)]);
        assert!(o.denied.is_empty());
    }
}
