//! kports-firewall's tests: parsers and evaluator on captured rulesets (`fixtures`), property
//! tests (`props`), and system tests in network namespaces made by the test (`system`, root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common {
    pub mod kube_proxy;
}
mod fixtures;
mod support;
mod system;
