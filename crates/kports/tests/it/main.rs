//! kports's integration tests, one binary: the command line (`cli`, no root), what an installed
//! kports brings (`install`: man pages and completions, no root), the agent on loopback
//! (`agent`, no root), and the system
//! tests (root; each makes its own network namespaces, or a `kports lab`, and removes them again
//! even when a test fails): the census against `ss` and `ip` (`census`), `check` and `explain`
//! (`check`), the node's own prerequisites (`prereq`), the firewall commands (`firewall`), the
//! lab (`lab`), the checks on a lab (`check_lab`), and `probe` against nft rules and nmap
//! (`probe`; its bad-input and loopback tests need no root), `preflight` on a lab without
//! components (`preflight`), the overlay check on the lab's VXLAN (`overlay`), and the agent in
//! every lab node with its page in headless chromium (`agent_lab`). What they share (the binary's
//! path, the root check, one lab at a time, a
//! namespace with component stand-ins) is in `support`.
//!
//! Run one topic with `cargo test -p kports --test it lab::`; the system tests under the
//! machine's lock (`flock /tmp/kports-system.lock ...`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod agent;
mod agent_lab;
mod census;
mod chaos;
mod check;
mod check_lab;
mod cli;
mod cluster;
mod firewall;
mod install;
mod lab;
mod overlay;
mod preflight;
mod prereq;
mod probe;
mod support;
