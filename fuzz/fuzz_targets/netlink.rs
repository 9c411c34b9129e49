//! Netlink datagrams as the kernel sends them: the first byte picks what the messages carry
//! (sock_diag TCP, UDP or UNIX sockets; rtnetlink links or addresses), the rest is a datagram,
//! split into messages and attributes by the same code that reads the kernel's.
#![no_main]

use kports_core::Proto;
use kports_linux::netlink::Messages;
use kports_linux::{link, sockdiag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, datagram)) = data.split_first() else {
        return;
    };
    let mut links = Vec::new();
    let mut addrs = Vec::new();
    for msg in Messages::new(datagram) {
        let Ok(msg) = msg else { break };
        match which % 5 {
            0 => {
                let _ = sockdiag::parse_inet(msg.payload, Proto::Tcp);
            }
            1 => {
                let _ = sockdiag::parse_inet(msg.payload, Proto::Udp);
            }
            2 => {
                let _ = sockdiag::parse_unix(msg.payload);
            }
            3 => links.extend(link::parse_link(msg.payload)),
            _ => addrs.extend(link::parse_addr(msg.payload)),
        }
    }
    let _ = link::join(links, addrs);
});
