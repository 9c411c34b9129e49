//! kports across nodes: running kports on every node of a cluster and joining what each saw.
//! [`preflight`] holds every node's future ports with temporary listeners while its peers dial
//! them, before Kubernetes is installed; [`overlay`] checks that the CNI's overlay carries
//! traffic both ways between every pair of nodes; [`launch`] says how a command reaches a node.

pub mod launch;
pub mod overlay;
pub mod preflight;
