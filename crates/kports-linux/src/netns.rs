//! Network namespaces: finding every one on the host, and running code inside one.
//!
//! Namespaces are found through `/proc/*/ns/net` and the bind mounts under `/run/netns` (where
//! `ip netns add` keeps namespaces that may have no process), deduplicated by inode. `setns`
//! changes only the calling thread, so code for another namespace runs on a thread of its own;
//! a netlink socket opened there stays bound to that namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kports_core::Netns;

/// A namespace and a path through which it can be entered.
#[derive(Debug, Clone)]
pub struct NsHandle {
    pub netns: Netns,
    /// `/proc/PID/ns/net` or `/run/netns/NAME`.
    pub path: PathBuf,
    /// A pid inside the namespace, if one was seen (for `/proc/PID/net/*`).
    pub pid: Option<u32>,
}

const RUN_NETNS: &str = "/run/netns";

/// The namespace of the calling thread.
pub fn current(proc_root: &Path) -> io::Result<NsHandle> {
    let path = proc_root.join("thread-self/ns/net");
    let inode = fs::metadata(&path)?.ino();
    Ok(NsHandle {
        netns: describe(proc_root, inode),
        path,
        pid: None,
    })
}

/// Every namespace on the host, sorted by inode, the host's first. Also returns how many processes' namespaces could not be seen for lack of permission.
pub fn all(proc_root: &Path) -> io::Result<(Vec<NsHandle>, usize)> {
    let names = named();
    let host = host_inode(proc_root);
    let mut found: BTreeMap<u64, NsHandle> = BTreeMap::new();
    let mut hidden = 0;
    for pid in crate::procfs::list_pids(proc_root)? {
        let path = proc_root.join(pid.to_string()).join("ns/net");
        let m = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                hidden += 1;
                continue;
            }
            // A process that exited: skip quietly.
            Err(_) => continue,
        };
        found.entry(m.ino()).or_insert_with(|| NsHandle {
            netns: Netns {
                inode: m.ino(),
                name: names.get(&m.ino()).cloned(),
                host: m.ino() == host,
            },
            path,
            pid: Some(pid),
        });
    }
    for (inode, name) in &names {
        found.entry(*inode).or_insert_with(|| NsHandle {
            netns: Netns {
                inode: *inode,
                name: Some(name.clone()),
                host: *inode == host,
            },
            path: Path::new(RUN_NETNS).join(name),
            pid: None,
        });
    }
    let mut v: Vec<NsHandle> = found.into_values().collect();
    v.sort_by_key(|h| (!h.netns.host, h.netns.inode));
    Ok((v, hidden))
}

/// Names a namespace inode from `/run/netns` and whether it is the host's.
pub fn describe(proc_root: &Path, inode: u64) -> Netns {
    Netns {
        inode,
        name: named().remove(&inode),
        host: host_inode(proc_root) == inode,
    }
}

/// The kernel's inode number of its first network namespace (`PROC_NET_INIT_INO`, fixed since
/// Linux 3.8).
const INIT_NET_INODE: u64 = 0xEFFF_FFF9;

/// The host's namespace: pid 1's, or the kernel's first where pid 1's cannot be read (a
/// sandbox that hides pid 1).
fn host_inode(proc_root: &Path) -> u64 {
    fs::metadata(proc_root.join("1/ns/net")).map_or(INIT_NET_INODE, |m| m.ino())
}

/// inode -> name of the namespaces bind-mounted under /run/netns.
fn named() -> BTreeMap<u64, String> {
    let Ok(rd) = fs::read_dir(RUN_NETNS) else {
        return BTreeMap::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let ino = fs::metadata(e.path()).ok()?.ino();
            Some((ino, e.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

/// Runs `f` on a new thread that has entered the namespace at `path`.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let path = path.to_path_buf();
    std::thread::spawn(move || -> io::Result<T> {
        let file = fs::File::open(&path)?;
        // SAFETY: setns on a valid namespace fd; it affects only this thread, which ends here.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace worker thread panicked"))?
}

/// Maps every cgroup v2 directory under `root` (normally `/sys/fs/cgroup`) by its id (its inode
/// number) to its path relative to `root` with a leading `/`, as the `0::` line of
/// `/proc/PID/cgroup` shows it. This names the container and pod of a socket whose holder could
/// not be read, from the cgroup id sock_diag reports. Bounded: a node has thousands of cgroups.
pub fn cgroup_paths(root: &Path) -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if out.len() > 200_000 {
            break;
        }
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            let path = e.path();
            if let Ok(rel) = path.strip_prefix(root) {
                out.insert(m.ino(), format!("/{}", rel.display()));
            }
            todo.push(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_id_is_found_by_inode() {
        let root = std::env::temp_dir().join(format!("kports-cgroup-{}", std::process::id()));
        let leaf = root.join("kubepods.slice/kubepods-pod6b1f2e3a_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-abc.scope");
        fs::create_dir_all(&leaf).unwrap();
        let id = fs::metadata(&leaf).unwrap().ino();
        let paths = cgroup_paths(&root);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(paths.len(), 3);
        assert_eq!(
            paths.get(&id).map(String::as_str),
            Some(
                "/kubepods.slice/kubepods-pod6b1f2e3a_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-abc.scope"
            )
        );
    }
}
