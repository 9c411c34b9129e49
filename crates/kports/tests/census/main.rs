//! kports's census tests that run the binary: `cli` needs nothing; `system` needs root and
//! builds its own network namespaces (named `kpt-*`), removed again even when a test fails.

mod cli;
mod support;
mod system;
