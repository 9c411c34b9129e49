//! The lab's contact with the system: external commands (`ip`, `bridge`, `nft`, through kports's
//! one runner), entering namespaces, the UTS namespaces that give nodes their host names, mounts,
//! and signalling recorded processes.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::plan::netns_name;

/// How long any one external command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Where `ip netns` keeps its namespaces.
pub const RUN_NETNS: &str = "/run/netns";

/// Whether the process runs as root (the lab creates namespaces and mounts).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The Debian package that provides `program`, for error messages.
fn package_of(program: &str) -> &'static str {
    match program {
        "ip" | "bridge" => "iproute2",
        "nft" => "nftables",
        _ => "the package that provides it",
    }
}

/// Runs `program args`, feeding `stdin`, through kports's one command runner
/// ([`kports_linux::runner`]); returns its standard output, or an error that shows the command
/// and what it printed.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use kports_linux::runner::{RunError, run_with_input};
    let shown = format!("{program} {}", args.join(" "));
    run_with_input(program, args, stdin, COMMAND_TIMEOUT).map_err(|e| match e {
        RunError::NotFound(_) => anyhow::anyhow!(
            "`{program}` is not installed: install {}",
            package_of(program)
        ),
        RunError::Timeout { secs, .. } => {
            anyhow::anyhow!("`{shown}` did not finish within {secs} s")
        }
        RunError::Failed { status, stderr, .. } => {
            anyhow::anyhow!("`{shown}` failed ({status}): {stderr}")
        }
        RunError::PermissionDenied { detail, .. } => {
            anyhow::anyhow!("`{shown}` failed: permission denied: {detail}")
        }
        e @ (RunError::Spawn { .. } | RunError::TooLarge(_)) => {
            anyhow::Error::new(e).context(format!("cannot run `{shown}`"))
        }
    })
}

/// Runs `ip -n NS -batch -` with one command per line.
pub fn ip_batch(ns: &str, lines: &[String]) -> anyhow::Result<()> {
    run(
        "ip",
        &["-n", &netns_name(ns), "-batch", "-"],
        Some(&(lines.join("\n") + "\n")),
    )
    .with_context(|| format!("cannot set up the network of {ns}"))?;
    Ok(())
}

/// Runs `nft -f -` inside the namespace `ns`.
pub fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &["netns", "exec", &netns_name(ns), "nft", "-f", "-"],
        Some(script),
    )
    .with_context(|| format!("cannot change the firewall of {ns}"))?;
    Ok(())
}

/// Path of a lab namespace under /run/netns.
pub fn netns_path(short: &str) -> PathBuf {
    Path::new(RUN_NETNS).join(netns_name(short))
}

/// Names (full, `kports-...`) of the lab's namespaces that exist now.
pub fn lab_namespaces() -> Vec<String> {
    let Ok(rd) = fs::read_dir(RUN_NETNS) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(crate::plan::NETNS_PREFIX))
        .collect();
    v.sort();
    v
}

fn cstring(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("{} holds a NUL byte", p.display()))
}

fn check(rc: libc::c_int, what: impl FnOnce() -> String) -> anyhow::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()).with_context(what)
    }
}

/// Creates a UTS namespace whose host name is `hostname` and keeps it alive with a bind
/// mount at `at`, the way `ip netns add` keeps network namespaces.
pub fn create_uts(at: &Path, hostname: &str) -> anyhow::Result<()> {
    File::create(at).with_context(|| format!("cannot create {}", at.display()))?;
    let target = cstring(at)?;
    let hostname = hostname.to_string();
    let at_shown = at.display().to_string();
    // unshare() moves only the calling thread: do it on a thread of its own, which ends here.
    thread::spawn(move || -> anyhow::Result<()> {
        // SAFETY: unshare with a valid flag; it changes only this thread's namespaces.
        check(unsafe { libc::unshare(libc::CLONE_NEWUTS) }, || {
            "cannot create a UTS namespace".into()
        })?;
        // SAFETY: the pointer and length describe `hostname`'s bytes, alive for the call.
        let rc = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
        check(rc, || format!("cannot set the host name {hostname}"))?;
        let source = c"/proc/thread-self/ns/uts";
        // SAFETY: both paths are NUL-terminated strings alive for the call; a bind mount
        // needs no file system type or data.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check(rc, || {
            format!("cannot bind-mount a UTS namespace on {at_shown}")
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread creating a UTS namespace panicked"))?
}

/// Open handles on a lab namespace, to enter it.
#[derive(Debug)]
pub struct Enter {
    net: File,
    uts: Option<File>,
}

impl Enter {
    /// Opens the network namespace of `short` and, if it has one, its UTS namespace.
    pub fn open(paths: &crate::state::Paths, short: &str) -> anyhow::Result<Enter> {
        let p = netns_path(short);
        let net = File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
        let uts = File::open(paths.uts(short)).ok();
        Ok(Enter { net, uts })
    }

    /// Moves the calling thread into the namespaces. Only async-signal-safe calls, so this
    /// also runs between fork and exec.
    pub fn setns(&self) -> io::Result<()> {
        // SAFETY: setns on an open namespace descriptor; it changes only the calling thread.
        if unsafe { libc::setns(self.net.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(uts) = &self.uts {
            // SAFETY: as above, for the UTS namespace.
            if unsafe { libc::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Gives the calling process a mount namespace of its own with `/sys` showing the current
/// network namespace's devices, as `ip netns exec` does. Call after [`Enter::setns`] and only
/// from a single-threaded process (`unshare(CLONE_NEWNS)` refuses otherwise).
pub fn private_sysfs() -> anyhow::Result<()> {
    // SAFETY: unshare with a valid flag.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }, || {
        "cannot create a mount namespace".into()
    })?;
    // Stop mounts made below from propagating back to the host.
    // SAFETY: NUL-terminated paths; a propagation change needs no source, type or data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        )
    };
    check(rc, || "cannot make / a slave mount".into())?;
    // SAFETY: NUL-terminated path; a lazy unmount of /sys affects only this mount namespace.
    unsafe { libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) };
    // SAFETY: NUL-terminated strings alive for the call; sysfs takes no data.
    let rc = unsafe {
        libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    check(rc, || "cannot mount /sys for the namespace".into())
}

/// Bind-mounts `file` on /etc/hosts. Call after [`private_sysfs`]: the mount stays in that
/// private mount namespace.
pub fn bind_hosts(file: &Path) -> anyhow::Result<()> {
    let src = cstring(file)?;
    // SAFETY: both paths are NUL-terminated strings alive for the call; a bind mount takes no
    // type or data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            c"/etc/hosts".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    check(rc, || {
        format!("cannot bind-mount {} on /etc/hosts", file.display())
    })
}

/// Mount points at or below `root`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = parse_mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(root))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// The mount point (field 5) of every line of a mountinfo file, with `\040`-style escapes
/// decoded.
pub fn parse_mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push(
                d.iter()
                    .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches the mount at `p`.
pub fn unmount(p: &Path) -> anyhow::Result<()> {
    let c = cstring(p)?;
    // SAFETY: NUL-terminated path alive for the call.
    check(
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) },
        || format!("cannot unmount {}", p.display()),
    )
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill with a positive pid signals that one process only.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Stops the process `pid` if it is still the one that started at `start`: SIGTERM, then
/// SIGKILL after a grace period. Returns whether it had to be killed at all.
pub fn stop_process(pid: u32, start: Option<u64>) -> anyhow::Result<bool> {
    if !crate::state::is_alive(pid, start) {
        return Ok(false);
    }
    for (sig, grace) in [
        (libc::SIGTERM, Duration::from_secs(5)),
        (libc::SIGKILL, Duration::from_secs(3)),
    ] {
        match signal(pid, sig) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(true),
            Err(e) => return Err(e).with_context(|| format!("cannot signal process {pid}")),
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !crate::state::is_alive(pid, start) {
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    bail!("process {pid} did not exit even after SIGKILL")
}

/// Writes a sysctl of the network namespace `short`.
pub fn netns_sysctl(short: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let value = value.to_string();
    kports_linux::netns::run_in(&netns_path(short), move || fs::write(&path, value))
        .and_then(|r| r)
        .with_context(|| format!("cannot set {key} in {short}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points() {
        let text = "22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n\
                    40 22 0:4 uts:[4026532] /run/kports-lab/uts/cp1 rw shared:5 - nsfs nsfs rw\n\
                    41 22 0:4 / /run/with\\040space rw - tmpfs tmpfs rw\n";
        let v = parse_mount_points(text);
        assert_eq!(
            v,
            [
                PathBuf::from("/run"),
                PathBuf::from("/run/kports-lab/uts/cp1"),
                PathBuf::from("/run/with space")
            ]
        );
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(r"a\040b\134c"), r"a b\c");
        assert_eq!(unescape_octal(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape_octal(r"\999"), r"\999");
    }

    #[test]
    fn missing_program_names_its_package() {
        let e = run("kports-no-such-program", &[], None).unwrap_err();
        assert!(e.to_string().contains("is not installed"), "{e}");
    }

    #[test]
    fn failing_command_shows_its_output() {
        let e = run("sh", &["-c", "echo boom >&2; exit 3"], None).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("`sh -c echo boom >&2; exit 3` failed") && e.contains("boom"),
            "{e}"
        );
        assert_eq!(run("cat", &[], Some("fed")).unwrap(), "fed");
    }
}
