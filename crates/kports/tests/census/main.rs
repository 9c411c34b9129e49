//! kports's census tests that run the binary: `cli` needs nothing; `system` needs root and
//! builds its own network namespaces (named `kpt-*`), removed again even when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod cli;
mod support;
mod system;
