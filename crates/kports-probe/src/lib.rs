//! kports's view between nodes: probes of TCP and UDP ports with bounded concurrency and a
//! timeout per probe ([`probe`]), what each answer means ([`status`]), the UDP responder that lets
//! a probe see `open` ([`responder`]), the plan from targets and roles to probes ([`plan`]),
//! cluster inventories ([`inventory`]), the rows kports prints ([`row`]), the temporary
//! listeners and responders of a preflight ([`temporary`]), and ICMP echoes for the overlay
//! check ([`echo`]).

pub mod echo;
pub mod inventory;
pub mod plan;
pub mod probe;
pub mod responder;
pub mod row;
pub mod status;
pub mod temporary;

pub use probe::{Options, Outcome, Probe};
pub use status::{Errno, Status, Transport};
