//! Container and pod identity from a process's cgroup path.
//!
//! The kubelet puts each pod in `kubepods[-QOS]-pod<UID>.slice` (systemd driver, `-` written as
//! `_`) or `kubepods/QOS/pod<UID>` (cgroupfs driver), and the runtime puts each container in a
//! leaf named after its 64-hex id (`cri-containerd-<id>.scope`, `crio-<id>.scope`,
//! `docker-<id>.scope`, or the bare id).

/// (container id, pod UID) found in `/proc/PID/cgroup` text.
pub fn container_of(cgroup: &str) -> (Option<String>, Option<String>) {
    let mut container = None;
    let mut pod = None;
    for line in cgroup.lines() {
        // hierarchy-ID:controllers:path; cgroup v2 is the `0::` line.
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for part in path.split('/') {
            if pod.is_none() {
                pod = pod_uid(part);
            }
            if let Some(id) = container_id(part) {
                container = Some(id);
            }
        }
    }
    (container, pod)
}

fn pod_uid(part: &str) -> Option<String> {
    let i = part.rfind("pod")?;
    let rest = &part[i + 3..];
    let uid = rest.strip_suffix(".slice").unwrap_or(rest);
    let ok = uid.len() == 36
        && uid
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_');
    ok.then(|| uid.replace('_', "-"))
}

fn container_id(part: &str) -> Option<String> {
    let leaf = part.strip_suffix(".scope").unwrap_or(part);
    let id = leaf.rsplit('-').next().unwrap_or(leaf);
    (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

    #[test]
    fn systemd_driver() {
        let cg = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6b1f2e3a_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            container_of(&cg),
            (
                Some(ID.to_string()),
                Some("6b1f2e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b".to_string())
            )
        );
    }

    #[test]
    fn cgroupfs_driver_v1() {
        let cg =
            format!("12:pids:/kubepods/besteffort/pod6b1f2e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b/{ID}\n");
        let (c, p) = container_of(&cg);
        assert_eq!(c.as_deref(), Some(ID));
        assert_eq!(p.as_deref(), Some("6b1f2e3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
    }

    #[test]
    fn host_process_has_neither() {
        assert_eq!(
            container_of("0::/system.slice/kubelet.service\n"),
            (None, None)
        );
        assert_eq!(container_of(""), (None, None));
    }
}
