//! Firewall faults: the `PROTO/PORT` specs a user types and the nftables table they become.
//!
//! Each node's firewall faults live in one table, `inet kports_lab_fault`, inside the node's
//! namespace. The table is rewritten whole from the list of rules kept in the state file, so
//! adding and clearing rules never depends on what `nft` happened to hold before.

use std::fmt;
use std::str::FromStr;

use kports_core::Proto;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The nftables table (family `inet`) that holds a node's firewall faults.
pub const TABLE: &str = "kports_lab_fault";

/// `tcp/10250`, `udp/8472` or a range such as `tcp/30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub proto: Proto,
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto.as_str(), self.first)?;
        if self.last != self.first {
            write!(f, "-{}", self.last)?;
        }
        Ok(())
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (proto, ports) = s.split_once('/').ok_or_else(|| {
            format!("`{s}` is not PROTO/PORT (for example tcp/10250 or udp/8472)")
        })?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err(format!(
                    "`{other}` is not a protocol the lab can block: use tcp or udp"
                ));
            }
        };
        let kports_core::catalog::PortRange { first, last } =
            kports_core::catalog::PortRange::parse(ports)?;
        Ok(PortSpec { proto, first, last })
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What happens to a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Silently discarded: a connect times out.
    Drop,
    /// Answered with an ICMP port unreachable: a connect is refused at once.
    Reject,
}

/// One firewall fault on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub verdict: Verdict,
    pub port: PortSpec,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self.verdict {
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        };
        write!(f, "{v} {}", self.port)
    }
}

/// The `nft -f` script that makes the node's fault table hold exactly `rules` (and removes
/// the table when there are none). Loopback traffic is let through first, as host firewalls
/// do; it ends only this table's chain, so other tables still see it.
pub fn nft_script(rules: &[Rule]) -> String {
    // Creating the table first makes the delete succeed whether or not it existed.
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    if rules.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table inet {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname \"lo\" accept\n"
    ));
    for r in rules {
        let ports = if r.port.first == r.port.last {
            r.port.first.to_string()
        } else {
            format!("{}-{}", r.port.first, r.port.last)
        };
        let verdict = match r.verdict {
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        };
        s.push_str(&format!(
            "\t\t{} dport {ports} {verdict}\n",
            r.port.proto.as_str()
        ));
    }
    s.push_str("\t}\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse() {
        let p: PortSpec = "tcp/10250".parse().unwrap();
        assert_eq!(
            p,
            PortSpec {
                proto: Proto::Tcp,
                first: 10250,
                last: 10250
            }
        );
        assert_eq!(p.to_string(), "tcp/10250");
        let p: PortSpec = "UDP/8472".parse().unwrap();
        assert_eq!(p.to_string(), "udp/8472");
        let p: PortSpec = "tcp/30000-32767".parse().unwrap();
        assert_eq!((p.first, p.last), (30000, 32767));
        assert_eq!(p.to_string(), "tcp/30000-32767");
    }

    #[test]
    fn bad_port_specs_say_why() {
        let cases = [
            ("10250", "is not PROTO/PORT"),
            ("icmp/1", "`icmp` is not a protocol"),
            ("tcp/", "`` is not a port number"),
            ("tcp/0", "`0` is not a port number"),
            ("tcp/65536", "`65536` is not a port number"),
            ("tcp/http", "`http` is not a port number"),
            ("tcp/20-10", "is backwards"),
        ];
        for (input, why) in cases {
            let e = input.parse::<PortSpec>().unwrap_err();
            assert!(e.contains(why), "{input}: {e}");
        }
    }

    #[test]
    fn rules_serialize_as_strings() {
        let r = Rule {
            verdict: Verdict::Reject,
            port: "tcp/6443".parse().unwrap(),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"verdict":"reject","port":"tcp/6443"}"#);
        assert_eq!(serde_json::from_str::<Rule>(&j).unwrap(), r);
        assert!(serde_json::from_str::<Rule>(r#"{"verdict":"drop","port":"tcp/x"}"#).is_err());
        assert_eq!(r.to_string(), "reject tcp/6443");
    }

    #[test]
    fn script_with_rules() {
        let rules = [
            Rule {
                verdict: Verdict::Drop,
                port: "tcp/10250".parse().unwrap(),
            },
            Rule {
                verdict: Verdict::Reject,
                port: "udp/30000-32767".parse().unwrap(),
            },
        ];
        let expected = "table inet kports_lab_fault\ndelete table inet kports_lab_fault\n\
table inet kports_lab_fault {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\
\t\tiifname \"lo\" accept\n\t\ttcp dport 10250 drop\n\t\tudp dport 30000-32767 reject\n\t}\n}\n";
        assert_eq!(nft_script(&rules), expected);
    }

    #[test]
    fn script_without_rules_only_removes_the_table() {
        assert_eq!(
            nft_script(&[]),
            "table inet kports_lab_fault\ndelete table inet kports_lab_fault\n"
        );
    }
}
