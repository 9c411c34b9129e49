//! kports-firewall's tests: parsers and evaluator on captured rulesets (`fixtures`), property
//! tests (`props`), and system tests in network namespaces made by the test (`system`, root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod fixtures;
#[path = "../common/kube_proxy.rs"]
mod kube_proxy;
mod nesting;
mod props;
mod support;
mod system;
