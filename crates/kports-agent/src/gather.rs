//! The whole cluster's reports, gathered by asking every peer's agent for its report
//! (`GET /api/v1/report`: `kports report`'s document, its probes of its peers included), so
//! that the matrix ([`crate::matrix`]) can be served from any node.
//!
//! At most [`Gather::concurrency`] peers are asked at a time, each answer within
//! [`Gather::timeout`] and [`MAX_ANSWER`] bytes. A peer whose agent does not answer becomes a
//! node without a report, with the reason: kports-cluster's join then shows it as such (its
//! own probes missing, its peers' probes of it kept), never as every port failing. The HTTP
//! is hyper's client over one connection per request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use kports_cluster::matrix::NodeInput;
use kports_cluster::report::{self, NodeDoc};
use kports_core::catalog::Role;
use serde_json::Value;

/// The largest answer read from a peer (a report of a busy node is a few hundred KiB).
pub const MAX_ANSWER: usize = 16 << 20;

/// How to ask peers.
#[derive(Clone)]
pub struct Gather {
    /// The port the peers' agents listen on.
    pub port: u16,
    /// The bearer token sent to them (the DaemonSet's agents share one).
    pub token: Option<Arc<[u8]>>,
    /// For each peer's answer (connecting included).
    pub timeout: Duration,
    /// Peers asked at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather")
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// A node to gather from, as the peer source knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Its roles (inventory, Node labels).
    pub roles: Vec<Role>,
    /// Its addresses (one per family).
    pub addresses: Vec<IpAddr>,
    /// Where its agent answers (`None`: no agent known).
    pub agent: Option<SocketAddr>,
}

impl Gather {
    /// Asks every source, at most [`Gather::concurrency`] at once; results in the order of
    /// `sources`.
    pub async fn all(&self, sources: Vec<Source>) -> Vec<NodeInput> {
        let n = self.concurrency.max(1);
        futures::stream::iter(sources.into_iter().map(|s| {
            let g = self.clone();
            async move { g.one(s).await }
        }))
        .buffered(n)
        .collect()
        .await
    }

    /// Asks one node's agent for its report (which holds its probes of its peers).
    pub async fn one(&self, source: Source) -> NodeInput {
        let report = match source.agent {
            None => Err("no kports agent is known to run on it".to_string()),
            Some(addr) => match tokio::time::timeout(self.timeout, self.report(addr)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "its agent at {addr} did not answer within {:?}",
                    self.timeout
                )),
            },
        };
        NodeInput {
            name: source.name,
            addresses: source.addresses,
            roles: source.roles,
            report,
        }
    }

    /// The report of the agent at `addr` (`GET /api/v1/report`).
    pub async fn report(&self, addr: SocketAddr) -> Result<NodeDoc, String> {
        let body = get(addr, "/api/v1/report", self.token.as_deref()).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| format!("the report of the agent at {addr} is not UTF-8"))?;
        report::parse(text).map_err(|e| format!("the report of the agent at {addr}: {e}"))
    }
}

/// `GET path` at `addr` with an optional bearer token: the body of a 200 answer, at most
/// [`MAX_ANSWER`] bytes. The caller bounds the time.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&[u8]>) -> Result<Bytes, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::get(path).header(header::HOST, addr.to_string());
    if let Some(t) = token {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(t);
        req = req.header(header::AUTHORIZATION, value);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{addr}: {e}"))?;
    let answer = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{addr}{path}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let why = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(format!("{addr}{path} answered {status} {why}")
                .trim_end()
                .to_string());
        }
        Ok(body)
    }
    .await;
    driver.abort();
    answer
}

/// `kports cluster --from-agents`: asks each agent in `agents` for its report (blocking, on a
/// runtime of its own) and names the nodes. An agent that answered is its report's node; one
/// that did not is named by its peers' probes of its address (the name they probed it under),
/// else by its address, so that its peers' probes of it and its missing report meet in one
/// node of the matrix.
pub fn from_agents(agents: &[SocketAddr], gather: &Gather) -> Result<Vec<NodeInput>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
    let answers = rt.block_on(async {
        futures::stream::iter(agents.iter().map(|a| {
            let g = gather.clone();
            let a = *a;
            async move {
                let r = match tokio::time::timeout(g.timeout, g.report(a)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "its agent at {a} did not answer within {:?}",
                        g.timeout
                    )),
                };
                (a, r)
            }
        }))
        .buffered(gather.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
    });
    Ok(name_nodes(answers))
}

/// The nodes of agents' answers (see [`from_agents`]).
pub fn name_nodes(answers: Vec<(SocketAddr, Result<NodeDoc, String>)>) -> Vec<NodeInput> {
    // Every probed (address -> name) the answering nodes know.
    let known: Vec<(IpAddr, String)> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|d| d.probes.iter().flatten())
        .map(|row| (row.target_address, row.target.clone()))
        .collect();
    let mut out: Vec<NodeInput> = Vec::new();
    for (addr, report) in answers {
        let (name, addresses) = match &report {
            Ok(d) => (d.name.clone(), Vec::new()),
            Err(_) => {
                let name = known
                    .iter()
                    .find(|(a, _)| *a == addr.ip())
                    .map_or_else(|| addr.ip().to_string(), |(_, n)| n.clone());
                (name, vec![addr.ip()])
            }
        };
        if out.iter().any(|n| n.name == name) {
            continue;
        }
        out.push(NodeInput {
            name,
            addresses,
            roles: Vec::new(),
            report,
        });
    }
    out
}

/// Where the agent of a node with `address` answers, given the agents' port.
pub fn agent_addr(address: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(address, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, probes: Vec<kports_probe::row::Row>) -> NodeDoc {
        serde_json::from_value(serde_json::json!({
            "name": name, "hostname": name, "roles": ["worker"], "cni": [], "interfaces": [],
            "ports": [], "findings": [], "firewall_read": true, "probes": probes, "routes": []
        }))
        .unwrap()
    }

    #[test]
    fn a_silent_agent_is_named_as_its_peers_probe_it() {
        let row = kports_probe::row::Row {
            source: "cp1".into(),
            target: "w2".into(),
            target_address: "192.0.2.22".parse().unwrap(),
            proto: kports_probe::Transport::Tcp,
            port: 10250,
            status: kports_probe::Status::Filtered,
            errno: None,
            latency_ms: Duration::from_secs(2),
            component: Some("kubelet".into()),
        };
        let nodes = name_nodes(vec![
            (
                "192.0.2.11:9640".parse().unwrap(),
                Ok(doc("cp1", vec![row])),
            ),
            ("192.0.2.22:9640".parse().unwrap(), Err("no answer".into())),
            ("192.0.2.99:9640".parse().unwrap(), Err("no answer".into())),
            // The same agent twice: once.
            ("192.0.2.11:9640".parse().unwrap(), Ok(doc("cp1", vec![]))),
        ]);
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cp1", "w2", "192.0.2.99"]);
        assert_eq!(
            nodes[1].addresses,
            ["192.0.2.22".parse::<IpAddr>().unwrap()]
        );
        assert!(nodes[1].report.is_err());
    }

    #[tokio::test]
    async fn a_silent_or_absent_agent_is_named_not_failed() {
        // A listener that accepts and never answers, on loopback.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        // A port nothing listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let g = Gather {
            port: 0,
            token: None,
            timeout: Duration::from_millis(300),
            concurrency: 4,
        };
        let source = |name: &str, agent| Source {
            name: name.into(),
            roles: vec![Role::Worker],
            addresses: vec!["127.0.0.1".parse().unwrap()],
            agent,
        };
        let out = g
            .all(vec![
                source("quiet", Some(silent_addr)),
                source("gone", Some(closed_addr)),
                source("none", None),
            ])
            .await;
        let names: Vec<&str> = out.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["quiet", "gone", "none"]);
        let why = |i: usize| out[i].report.as_ref().err().cloned().unwrap_or_default();
        assert!(why(0).contains("did not answer within"), "{}", why(0));
        assert!(why(1).contains("cannot connect"), "{}", why(1));
        assert!(why(2).contains("no kports agent"), "{}", why(2));
        assert_eq!(out[0].roles, [Role::Worker]);
        drop(silent);
    }
}
