//! The web page at `/`: one HTML file (styles and script inline, nothing fetched from elsewhere,
//! so it works offline) compiled into the binary. It asks `/api/v1/matrix` every few seconds,
//! with the bearer token the user types when the agent needs one, and draws the node x
//! required-port matrix (a heatmap beyond a few dozen nodes), the node list with roles,
//! component health and findings, and the evidence and cause of a clicked cell.

/// The page.
pub const INDEX: &str = include_str!("page/index.html");
