//! Thin wrappers over the Linux calls the benchmark needs and the standard library lacks:
//! file limits, parent-death signals, process names, signalfd, pidfd, memfd and `wait4`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Converts a `-1` return into the current `errno`.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Raises the soft open-file limit to the hard one; returns the new limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: l is a live rlimit the call fills in.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) })?;
    l.rlim_cur = l.rlim_max;
    // SAFETY: l is a valid rlimit; lowering nothing, raising soft to hard is always allowed.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) })?;
    Ok(l.rlim_cur)
}

/// The hard open-file limit.
pub fn nofile_hard() -> io::Result<u64> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: l is a live rlimit the call fills in.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) })?;
    Ok(l.rlim_max)
}

/// Asks the kernel to send `sig` to this process when its parent exits, then makes sure the
/// parent is still `parent` (it may have exited before the request was made).
pub fn die_with_parent(sig: libc::c_int, parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes one integer argument.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })?;
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::other(
            "the parent process exited during start-up",
        ));
    }
    Ok(())
}

/// Sets this process's `comm` (at most 15 bytes are kept).
pub fn set_name(name: &str) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which c is, for the call's duration.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Makes this process the reaper of its orphaned descendants, so that workers of a killed load
/// generator can be waited for.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Blocks SIGTERM, SIGINT and SIGHUP and returns a signalfd that becomes readable when one
/// arrives.
pub fn termination_signals() -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is live; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    // SAFETY: set is initialised; the old mask is not wanted.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: set is initialised; -1 asks for a new descriptor.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
    // SAFETY: fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until one of `fds` is readable (or hung up) or `timeout` passes; returns which are.
pub fn poll_readable(fds: &[libc::c_int], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wait never ends a little before the deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: p is a live array of p.len() pollfd structures.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(p
            .iter()
            .map(|x| x.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .collect());
    }
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// How a waited-for process ended, and its peak resident set.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// Raw wait status.
    pub status: libc::c_int,
    /// `ru_maxrss`: peak resident set in KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// `wait4(pid)`, blocking, retried on EINTR.
pub fn wait4(pid: libc::pid_t) -> io::Result<Reaped> {
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid storage for the call to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and ru are live for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        return Ok(Reaped {
            status,
            max_rss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        });
    }
}

/// Reaps every already-exited child in process group `pgid`; returns how many.
pub fn reap_group(pgid: libc::pid_t) -> usize {
    let mut n = 0;
    loop {
        let mut status = 0;
        // SAFETY: status is live; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return n;
        }
        n += 1;
    }
}

/// Sends `sig` to every process of group `pgid`. Ok(false) if the group no longer exists.
pub fn kill_group(pgid: libc::pid_t, sig: libc::c_int) -> io::Result<bool> {
    // SAFETY: kill with a negative pid signals a process group; no memory is involved.
    if unsafe { libc::kill(-pgid, sig) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// An anonymous in-memory file, to take a child's output without a pipe that could fill up.
pub fn memfd(name: &str) -> io::Result<File> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is NUL-terminated; the result is checked.
    let fd = check(unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: fd is fresh and owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Everything written to `f` so far, at most `limit` bytes.
pub fn read_back(f: &mut File, limit: u64) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: an all-zero utsname is valid storage for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is live for the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let b: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// The memory the kernel says is available for new work (`MemAvailable`), in GiB; 0 when
/// /proc/meminfo cannot be read.
pub fn mem_available_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_available_kib(&m))
        .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0))
}

/// `MemAvailable` of a /proc/meminfo text, in KiB.
fn mem_available_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        l.strip_prefix("MemAvailable:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The raw descriptor of anything that has one, for `poll_readable`.
pub fn raw(fd: &impl AsRawFd) -> libc::c_int {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_read_from_its_own_line() {
        let m = "MemTotal:       24000000 kB\nMemFree:         6000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available_kib(m), Some(20_000_000));
        assert_eq!(mem_available_kib("MemFree: 5 kB\n"), None);
    }
}
