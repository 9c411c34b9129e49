//! The census benchmark: a loopback load generator and a harness that times kports against
//! `ss`, `netstat` and `lsof` on the same load. Linux only; needs root for owner attribution.

pub mod crosscheck;
pub mod firewall;
pub mod harness;
pub mod loadgen;
pub mod measure;
pub mod report;
pub mod stats;
pub mod sys;
