//! kports's long-running node agent: it keeps this node's report and its latest probes of its
//! peers fresh, and serves them read-only over HTTP with Prometheus metrics.
//!
//! The agent does not take a census or probe by itself: the binary hands it a [`Collector`]
//! (one round of "report this node, probe its peers"), so everything here is tested with fakes,
//! without root and with no traffic beyond loopback. The pieces:
//!
//! - [`state`]: the latest documents and what the metrics need from them;
//! - [`api`]: the HTTP router (`app(state)`), its bearer token and its request bounds;
//! - [`metrics`]: OpenMetrics families whose series grow with the number of peers probed, not
//!   with the size of the cluster;
//! - [`refresh`]: the jittered refresh loop;
//! - [`serve`]: the accept loop (bounded connections) with graceful shutdown on SIGTERM;
//! - [`peers`]: which peers to probe (rendezvous hashing above a node count);
//! - [`discovery`]: peers from the Kubernetes API (watches on Nodes and the agent's pods);
//! - [`plan`]: the peers to probe this round, each with the ports this node needs of it;
//! - [`redact`]: secret values in served documents' command lines;
//! - [`gather`] and [`matrix`]: the whole cluster's matrix, asked of the peers' agents;
//! - [`responder`]: the UDP responders that let peers see this node's UDP ports `open`;
//! - [`page`]: the web page, built into the binary.

pub mod api;
pub mod discovery;
pub mod gather;
pub mod matrix;
pub mod metrics;
pub mod page;
pub mod peers;
pub mod plan;
pub mod redact;
pub mod refresh;
pub mod responder;
pub mod serve;
pub mod state;

pub use api::{Auth, Limits, app};
pub use refresh::{Collector, Schedule};
pub use state::{AgentState, Finding, ProbeRun, Report, Round};
