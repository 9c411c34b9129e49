//! A process's full name, never the kernel's 15-byte `comm`.
//!
//! `comm` is the executable's file name cut to 15 bytes (`kube-controlle`... for
//! `kube-controller-manager`), or whatever the process set with `prctl(PR_SET_NAME)`. The full
//! name is the base name of the executable or of `argv[0]` that `comm` is a prefix of; when none
//! is, the process renamed itself and `comm` is what it chose to be called.

use crate::ProcessInfo;

/// Length at which the kernel cuts `comm` (TASK_COMM_LEN - 1).
const COMM_MAX: usize = 15;

/// The name to show for a process.
pub fn process_name(p: &ProcessInfo) -> String {
    let exe = p
        .exe
        .as_deref()
        .map(|e| basename(e.strip_suffix(" (deleted)").unwrap_or(e)));
    let arg0 = p
        .argv
        .first()
        .map(|a| basename(a.split(' ').next().unwrap_or(a)));
    for cand in [exe, arg0].into_iter().flatten() {
        if cand == p.comm || (p.comm.len() >= COMM_MAX && cand.starts_with(p.comm.as_str())) {
            return cand.to_string();
        }
    }
    if p.comm.is_empty() {
        // A process that exited between reads, or a kernel thread: fall back to what we have.
        return exe.or(arg0).unwrap_or("?").to_string();
    }
    p.comm.clone()
}

/// Whether `wanted` names the process called `name` (its full name): the full name, or the
/// kernel's `comm` for it (the first 15 bytes, as `ss` and `ps` show `kube-controlle`).
pub fn names_process(wanted: &str, name: &str) -> bool {
    wanted == name
        || (wanted.len() == COMM_MAX
            && name.len() > COMM_MAX
            && name.as_bytes().starts_with(wanted.as_bytes()))
}

/// The last path component of `path`.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_by_its_full_name_or_its_comm() {
        assert!(names_process(
            "kube-controller-manager",
            "kube-controller-manager"
        ));
        assert!(names_process("kube-controller", "kube-controller-manager"));
        // A prefix shorter than comm is not comm.
        assert!(!names_process("kube-control", "kube-controller-manager"));
        assert!(!names_process(
            "kube-controller",
            "kube-controller"[..14].as_ref()
        ));
        assert!(!names_process("etcd", "etcdctl"));
    }

    fn info(comm: &str, exe: Option<&str>, argv: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            comm: comm.into(),
            exe: exe.map(Into::into),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cgroup: String::new(),
        }
    }

    #[test]
    fn truncated_comm_is_completed_from_exe() {
        let p = info(
            "kube-controller",
            Some("/usr/local/bin/kube-controller-manager"),
            &["kube-controller-manager", "--bind-address=127.0.0.1"],
        );
        assert_eq!(process_name(&p), "kube-controller-manager");
    }

    #[test]
    fn truncated_comm_is_completed_from_argv0_when_exe_is_unreadable() {
        let p = info(
            "kube-controller",
            None,
            &["/usr/bin/kube-controller-manager"],
        );
        assert_eq!(process_name(&p), "kube-controller-manager");
    }

    #[test]
    fn interpreter_keeps_its_comm() {
        // A script: exe is the interpreter, comm is the script's name.
        let p = info(
            "flanneld-wrap",
            Some("/usr/bin/python3.11"),
            &["python3", "/x/flanneld-wrap"],
        );
        assert_eq!(process_name(&p), "flanneld-wrap");
    }

    #[test]
    fn short_comm_must_match_exactly() {
        // comm "etcd" must not be "completed" to "etcdctl".
        let p = info("etcd", Some("/usr/bin/etcdctl"), &["etcdctl"]);
        assert_eq!(process_name(&p), "etcd");
    }

    #[test]
    fn deleted_executable_keeps_its_name() {
        let p = info("kubelet", Some("/usr/bin/kubelet (deleted)"), &[]);
        assert_eq!(process_name(&p), "kubelet");
    }

    #[test]
    fn vanished_process_falls_back() {
        assert_eq!(process_name(&info("", None, &[])), "?");
    }
}
