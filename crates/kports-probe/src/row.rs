//! The rows of `kports probe` (and, with more fields, of the cluster matrix): a fixed set of
//! fields, documented in docs/schema.md.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plan::Planned;
use crate::probe::Outcome;
use crate::status::{Errno, Status, Transport};

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The node that probed (its host name).
    pub source: String,
    /// The target as named (inventory node, address, host name).
    pub target: String,
    pub target_address: IpAddr,
    pub proto: Transport,
    pub port: u16,
    pub status: Status,
    pub errno: Option<Errno>,
    /// Milliseconds from the first system call to the answer (the timeout when none came).
    #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
    pub latency_ms: std::time::Duration,
    pub component: Option<String>,
}

fn millis<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_ms(*d))
}

/// Milliseconds with two decimals, as every row shows a latency: microseconds are noise over a
/// network.
pub fn round_ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

fn from_millis<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let ms = f64::deserialize(d)?;
    if !ms.is_finite() || !(0.0..=1e12).contains(&ms) {
        return Err(serde::de::Error::custom(format!(
            "latency_ms {ms} is not a duration"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(ms / 1000.0))
}

/// Joins a plan with its outcomes (same order).
pub fn rows(source: &str, plan: &[Planned], outcomes: &[Outcome]) -> Vec<Row> {
    plan.iter()
        .zip(outcomes)
        .map(|(p, o)| Row {
            source: source.to_string(),
            target: p.target.clone(),
            target_address: p.probe.addr,
            proto: p.probe.transport,
            port: p.probe.port,
            status: o.status,
            errno: o.errno,
            latency_ms: o.latency,
            component: p.component.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Probe;

    #[test]
    fn json_has_exactly_the_fixed_fields() {
        let plan = [Planned {
            target: "w1".into(),
            probe: Probe {
                addr: IpAddr::from([192, 0, 2, 21]),
                port: 10250,
                transport: Transport::Tcp,
            },
            component: Some("kubelet".into()),
        }];
        let out = [Outcome {
            status: Status::Unreachable,
            errno: Some(Errno(libc::EHOSTUNREACH)),
            latency: std::time::Duration::from_micros(1_234_567),
        }];
        let r = rows("cp1", &plan, &out);
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!([{
                "source": "cp1",
                "target": "w1",
                "target_address": "192.0.2.21",
                "proto": "tcp",
                "port": 10250,
                "status": "unreachable",
                "errno": "EHOSTUNREACH",
                "latency_ms": 1234.57,
                "component": "kubelet"
            }])
        );
        // Read back (a saved report), the row is the same, to the serialized precision.
        let back: Vec<Row> = serde_json::from_value(v).unwrap();
        assert_eq!(back[0].errno, Some(Errno(libc::EHOSTUNREACH)));
        assert_eq!(back[0].status, Status::Unreachable);
        assert_eq!(back[0].latency_ms.as_micros(), 1_234_570);
        assert!(serde_json::from_value::<Row>(serde_json::json!({"errno": "EBOGUS"})).is_err());
    }
}
