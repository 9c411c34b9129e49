//! A CNI's own configuration, read as evidence of the backend it uses.
//!
//! Devices show a backend only once it runs (`flannel.1` for VXLAN); the CNI's configuration
//! says which backend it was told to use, so where it is readable it wins over the device guess
//! ([`crate::resolve::apply_backends`]). Today: flannel's `net-conf.json`, whose `Backend.Type`
//! is `vxlan`, `host-gw`, `wireguard`, `udp` (or another backend the catalog does not list),
//! with the port settings of each. The text comes from the caller (kports-node reads it through
//! its IO, within the configuration size limit); nothing here reads a file.

use serde_json::Value;

use crate::resolve::BackendInUse;

/// Where flanneld reads `net-conf.json` unless `--net-config-path` says otherwise: the path
/// inside the kube-flannel container (the DaemonSet mounts its ConfigMap there), and on the
/// host for a flanneld run outside a pod.
pub const FLANNEL_NET_CONF: &str = "/etc/kube-flannel/net-conf.json";
/// k3s writes its embedded flannel's configuration here.
pub const K3S_FLANNEL_NET_CONF: &str = "/var/lib/rancher/k3s/agent/etc/flannel/net-conf.json";
/// flanneld's flag naming another `net-conf.json`.
pub const FLANNEL_NET_CONF_FLAG: &str = "--net-config-path";

/// The backend the flannel `net-conf.json` `text` configures (read from `source`, which the
/// evidence names). Go's JSON decoding, which flannel uses, matches keys without regard to
/// case, and so does this. A configuration without `Backend` uses flannel's default, `udp`.
pub fn flannel_net_conf(text: &str, source: &str) -> Result<BackendInUse, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(top) = &doc else {
        return Err("not a JSON object".to_string());
    };
    let backend = key(top, "Backend");
    let (kind, said) = match backend {
        None | Some(Value::Null) => ("udp".to_string(), "no Backend: flannel's default udp"),
        Some(Value::Object(b)) => match key(b, "Type") {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                (t.trim().to_ascii_lowercase(), "Backend.Type")
            }
            None => ("udp".to_string(), "no Backend.Type: flannel's default udp"),
            Some(other) => return Err(format!("Backend.Type is {other}, not a backend name")),
        },
        Some(other) => return Err(format!("Backend is {other}, not an object")),
    };
    let mut ports = Vec::new();
    if let Some(Value::Object(b)) = backend {
        // (setting, the catalog's port of the entry it moves); 0 keeps the default.
        let settings: &[(&str, u16)] = match kind.as_str() {
            "vxlan" => &[("Port", 8472)],
            "udp" => &[("Port", 8285)],
            "wireguard" => &[("ListenPort", 51820), ("V6ListenPort", 51821)],
            _ => &[],
        };
        for (name, catalog) in settings {
            match key(b, name) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
                    Some(0) => {}
                    Some(p) => ports.push((*catalog, p, format!("Backend.{name} {p}"))),
                    None => return Err(format!("Backend.{name} is {v}, not a port")),
                },
            }
        }
    }
    let source = if said == "Backend.Type" {
        format!("{source}: Backend.Type {kind}")
    } else {
        format!("{source}: {said}")
    };
    Ok(BackendInUse {
        cni: "flannel".to_string(),
        backends: vec![kind],
        ports,
        source,
    })
}

/// The value of `name` in `obj`, matched without regard to case as Go's JSON decoding does.
fn key<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(text: &str) -> (Vec<String>, Vec<(u16, u16, String)>, String) {
        let b = flannel_net_conf(text, "net-conf.json").unwrap();
        assert_eq!(b.cni, "flannel");
        (b.backends, b.ports, b.source)
    }

    #[test]
    fn each_backend_type_and_its_ports() {
        let (b, p, s) = backend(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#);
        assert_eq!((b, p), (vec!["vxlan".to_string()], vec![]));
        assert_eq!(s, "net-conf.json: Backend.Type vxlan");
        let (b, p, _) = backend(r#"{"Backend": {"Type": "vxlan", "Port": 4789}}"#);
        assert_eq!(b, ["vxlan"]);
        assert_eq!(p, [(8472, 4789, "Backend.Port 4789".to_string())]);
        let (b, p, _) = backend(r#"{"Backend": {"Type": "udp", "Port": 7890}}"#);
        assert_eq!(b, ["udp"]);
        assert_eq!(p, [(8285, 7890, "Backend.Port 7890".to_string())]);
        let (b, p, _) = backend(
            r#"{"Backend": {"Type": "wireguard", "ListenPort": 51000, "V6ListenPort": 51001}}"#,
        );
        assert_eq!(b, ["wireguard"]);
        assert_eq!(
            p,
            [
                (51820, 51000, "Backend.ListenPort 51000".to_string()),
                (51821, 51001, "Backend.V6ListenPort 51001".to_string())
            ]
        );
        let (b, p, _) = backend(r#"{"Backend": {"Type": "host-gw"}}"#);
        assert_eq!((b, p), (vec!["host-gw".to_string()], vec![]));
    }

    #[test]
    fn keys_match_without_case_and_port_zero_keeps_the_default() {
        let (b, p, _) = backend(r#"{"backend": {"type": "VXLAN", "port": 0}}"#);
        assert_eq!((b, p), (vec!["vxlan".to_string()], vec![]));
    }

    #[test]
    fn no_backend_is_flannels_default_udp() {
        let (b, _, s) = backend(r#"{"Network": "10.244.0.0/16"}"#);
        assert_eq!(b, ["udp"]);
        assert_eq!(s, "net-conf.json: no Backend: flannel's default udp");
        let (b, _, _) = backend(r#"{"Backend": {"VNI": 1}}"#);
        assert_eq!(b, ["udp"]);
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        for (text, want) in [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"Backend": "vxlan"}"#,
                "Backend is \"vxlan\", not an object",
            ),
            (
                r#"{"Backend": {"Type": 3}}"#,
                "Backend.Type is 3, not a backend name",
            ),
            (
                r#"{"Backend": {"Type": "vxlan", "Port": 70000}}"#,
                "Backend.Port is 70000, not a port",
            ),
            (
                r#"{"Backend": {"Type": "udp", "Port": "x"}}"#,
                "Backend.Port is \"x\", not a port",
            ),
        ] {
            let e = flannel_net_conf(text, "f").unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}
