//! What the fuzz targets share: judging a parsed ruleset the way `kports firewall check` does,
//! and reading back the HTTP answers of the agent.
//!
//! Every target feeds outside input to one public parser and, where the parser's result is
//! used further (a ruleset, a catalog), runs that use too: a crash anywhere on the way is a
//! crash kports would have on a node.

pub mod http;

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

/// The packet a target's input chooses, from seven bytes: flags (bit 0 IPv6; bits 1-2 TCP, UDP,
/// SCTP or ICMP; bit 3 from a prefix rather than one address; bit 4 to the node's address;
/// bit 5 in on `eth0`, else bit 6 in on `lo`; bit 7 the ports to the end of the range rather
/// than sixteen), the destination port (big-endian), and the source address's last four bytes
/// (IPv4 whole; IPv6 under 2001:db8::/32), the last of which also gives the prefix's length.
/// Returns the packet and the last port of the range to judge from its port.
pub fn chosen_packet(b: [u8; 7]) -> (Packet, u16) {
    let flags = b[0];
    let v6 = flags & 1 != 0;
    let proto = [6, 17, 132, 1][usize::from((flags >> 1) & 3)];
    let dport = u16::from_be_bytes([b[1], b[2]]);
    let tail = [b[3], b[4], b[5], b[6]];
    let (addr, node, bits) = if v6 {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        o[12..].copy_from_slice(&tail);
        (
            IpAddr::from(o),
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]),
            129,
        )
    } else {
        (IpAddr::from(tail), IpAddr::from([192, 0, 2, 10]), 33)
    };
    let src = if flags & 8 != 0 {
        AddrRange::prefix(addr, (u16::from(b[6]) % bits) as u8)
    } else {
        AddrRange::single(addr)
    };
    let iif = if flags & 32 != 0 {
        Some("eth0".into())
    } else if flags & 64 != 0 {
        Some("lo".into())
    } else {
        None
    };
    let last = if flags & 128 != 0 {
        u16::MAX
    } else {
        dport.saturating_add(16)
    };
    let p = Packet {
        v6,
        proto,
        dport,
        src,
        dst: (flags & 16 != 0).then_some(node),
        iif,
    };
    (p, last)
}

/// Assembles a capture into a ruleset and judges the packet `b` chooses ([`chosen_packet`]),
/// alone and over its range of ports.
pub fn assemble_and_judge_chosen(c: &Capture, b: [u8; 7]) {
    let (rs, _warnings) = capture::assemble(c);
    let ev = Evaluator::new(&rs);
    let (p, last) = chosen_packet(b);
    let j = ev.judge(&p);
    let _ = (j.word(), j.summary());
    let _ = ev.judge_ports(&p, p.dport, last);
}
