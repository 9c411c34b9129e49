//! What the fuzz targets share: judging a parsed ruleset the way `kports firewall check` does.
//!
//! Every target feeds outside input to one public parser and, where the parser's result is
//! used further (a ruleset, a catalog), runs that use too: a crash anywhere on the way is a
//! crash kports would have on a node.

use std::net::IpAddr;

use kports_firewall::capture::{self, Capture};
use kports_firewall::model::AddrRange;
use kports_firewall::{Evaluator, Packet};

/// Assembles a capture into a ruleset and judges a few packets against it: single ports
/// (the API server, VXLAN) and a range (NodePorts), over IPv4 and IPv6, from one address and
/// from everywhere.
pub fn assemble_and_judge(c: &Capture) {
    let (rs, _warnings) = capture::assemble(c);
    let ev = Evaluator::new(&rs);
    let v4: IpAddr = IpAddr::from([203, 0, 113, 1]);
    let v6: IpAddr = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    let node4: IpAddr = IpAddr::from([192, 0, 2, 10]);
    for (v6_packet, src, dst) in [
        (false, AddrRange::single(v4), Some(node4)),
        (false, AddrRange::prefix(v4, 0), None),
        (true, AddrRange::single(v6), None),
    ] {
        for (proto, dport) in [(6u8, 6443u16), (17, 8472)] {
            let p = Packet {
                v6: v6_packet,
                proto,
                dport,
                src,
                dst,
                iif: Some("eth0".into()),
            };
            let j = ev.judge(&p);
            let _ = (j.word(), j.summary());
        }
        let p = Packet {
            v6: v6_packet,
            proto: 6,
            dport: 30000,
            src,
            dst,
            iif: None,
        };
        let _ = ev.judge_ports(&p, 30000, 32767);
    }
}
