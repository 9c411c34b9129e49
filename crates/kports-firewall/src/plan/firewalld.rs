//! The firewalld writer: rich rules in a zone, through `firewall-cmd`.

use super::*;

pub(super) fn firewalld_script(allows: &[Allow], zone: &str) -> String {
    let mut s = String::new();
    let mut rules: Vec<String> = Vec::new();
    for a in allows {
        for src in &a.sources {
            let fam = if src.v6 { "ipv6" } else { "ipv4" };
            rules.push(format!(
                "rule priority=\"-10\" family=\"{fam}\" source address=\"{src}\" port port=\"{}\" protocol=\"{}\" accept",
                port_nft(a.port.lo, a.port.hi),
                a.port.proto.as_str()
            ));
        }
    }
    let mut closed: BTreeMap<&str, Vec<(u16, u16)>> = BTreeMap::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        closed.insert(proto.as_str(), closed_ports(allows, proto));
    }
    for (proto, ports) in closed {
        for (lo, hi) in ports {
            rules.push(format!(
                "rule priority=\"-5\" port port=\"{}\" protocol=\"{proto}\" reject",
                port_nft(lo, hi)
            ));
        }
    }
    for r in rules {
        // Adding a rule that exists is a warning, not an error: safe to run twice.
        let _ = writeln!(s, "firewall-cmd --zone={zone} --add-rich-rule='{r}'");
        let _ = writeln!(
            s,
            "firewall-cmd --permanent --zone={zone} --add-rich-rule='{r}'"
        );
    }
    s
}
