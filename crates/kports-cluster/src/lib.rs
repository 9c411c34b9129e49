//! kports across nodes. [`via`] runs a command on every node (through a user's prefix such as
//! `ssh root@{address}`, or in a lab node's namespace), in parallel and bounded; [`report`] is
//! the document each node gives about itself (`kports report -o json`: roles, CNI, interfaces,
//! required ports with their listeners and firewall verdicts, findings, and its probes of its
//! peers); [`matrix`] joins the nodes' documents into the node x required-port matrix, and
//! [`cause`] says why each failing cell fails. Everything but [`via`] is pure: the join works
//! on data, so saved reports are analysed the same way as live ones.

pub mod cause;
pub mod matrix;
pub mod report;
pub mod via;
