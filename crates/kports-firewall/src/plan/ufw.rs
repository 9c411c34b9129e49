//! The ufw writer: `ufw allow` and `ufw deny` rules, through `ufw`.

use super::*;

pub(super) fn ufw_script(allows: &[Allow]) -> String {
    let mut s = String::new();
    // Allows go first (prepend), the rejects after them (append); ufw skips rules it has.
    for a in allows {
        for src in &a.sources {
            let _ = writeln!(
                s,
                "ufw prepend allow proto {} from {src} to any port {} comment '{}'",
                a.port.proto.as_str(),
                port_ipt(a.port.lo, a.port.hi),
                comment(a)
            );
        }
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        for (lo, hi) in closed_ports(allows, proto) {
            let _ = writeln!(
                s,
                "ufw reject proto {} to any port {} comment 'kports: closed to other sources'",
                proto.as_str(),
                port_ipt(lo, hi)
            );
        }
    }
    s
}
