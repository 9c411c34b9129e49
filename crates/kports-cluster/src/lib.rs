//! kports across nodes. [`via`] runs a command on every node (through a user's prefix such as
//! `ssh root@{address}`, or in a lab node's namespace), in parallel and bounded; [`report`] is
//! the document each node gives about itself (`kports report -o json`: roles, CNI, interfaces,
//! required ports with their listeners and firewall verdicts, findings, and its probes of its
//! peers); [`matrix`] joins the nodes' documents into the node x required-port matrix, and
//! [`cause`] says why each failing cell fails. Everything but [`via`], [`launch`] and the runs of
//! [`preflight`] and [`overlay`] is pure: the join works on data, so saved reports are analysed
//! the same way as live ones.
//!
//! Before Kubernetes is installed, [`preflight`] holds every node's future ports with temporary
//! listeners while its peers dial them; [`overlay`] checks that the CNI's overlay carries
//! traffic both ways between every pair of nodes. Both keep a command running on a node while
//! others run elsewhere, which [`launch`] starts (with [`via`]'s templates).

pub mod cause;
pub mod launch;
pub mod matrix;
pub mod overlay;
pub mod preflight;
pub mod report;
pub mod via;
