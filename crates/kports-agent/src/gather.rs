//! The whole cluster's matrix, gathered by asking every peer's agent for its report and its
//! probes (`GET /api/v1/report`, `GET /api/v1/probes`), so that the page and
//! `kports cluster --from-agents` work from any node.
//!
//! Each peer is asked at most [`Gather::concurrency`] at a time, each answer within
//! [`Gather::timeout`] and [`MAX_ANSWER`] bytes; a peer whose agent does not answer is listed
//! with the reason, and its cells are simply absent (its own probes are unknown), never shown as
//! every port failing. The HTTP is hyper's client over one connection per request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use kports_core::catalog::Role;
use kports_probe::row::Row;
use serde::{Deserialize, Serialize};
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

/// A node to gather from: its name and where its agent answers (`None`: no agent known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Its roles as the peer source knows them (inventory, Node labels).
    pub roles: Vec<Role>,
    pub agent: Option<SocketAddr>,
}

/// Whether a node's agent answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum AgentAnswer {
    /// Its report and probes are in the matrix.
    Answered,
    /// It did not answer (the reason): what it knows is missing, not failing.
    NoAnswer(String),
    /// No agent is known to run on it.
    NoAgent,
}

/// One node of the gathered matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    /// Its roles as the peer source knows them (its report says what it detected itself).
    pub roles: Vec<Role>,
    /// `http://ADDR:PORT` of its agent, when known.
    pub agent_url: Option<String>,
    pub agent: AgentAnswer,
    /// Its report document (`/api/v1/report`), when it answered.
    pub report: Option<Value>,
}

/// What one node's agent gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    pub node: NodeEntry,
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
struct ProbesDocument {
    items: Vec<Row>,
}

impl Gather {
    /// Asks every source, at most [`Gather::concurrency`] at once; results in the order of
    /// `sources`.
    pub async fn all(&self, sources: Vec<Source>) -> Vec<Gathered> {
        let n = self.concurrency.max(1);
        futures::stream::iter(sources.into_iter().map(|s| {
            let g = self.clone();
            async move { g.one(&s).await }
        }))
        .buffered(n)
        .collect()
        .await
    }

    /// Asks one node's agent for its report and its probes.
    pub async fn one(&self, source: &Source) -> Gathered {
        let entry = |agent, report| NodeEntry {
            name: source.name.clone(),
            roles: source.roles.clone(),
            agent_url: source.agent.map(|a| format!("http://{a}")),
            agent,
            report,
        };
        let Some(addr) = source.agent else {
            return Gathered {
                node: entry(AgentAnswer::NoAgent, None),
                rows: Vec::new(),
            };
        };
        let asked = async {
            let report = self.get(addr, "/api/v1/report").await?;
            let report: Value = serde_json::from_slice(&report)
                .map_err(|e| format!("its report is not JSON: {e}"))?;
            let probes = self.get(addr, "/api/v1/probes").await;
            // An agent that does not probe (501) or has not probed yet (503) still answered.
            let rows = match probes {
                Ok(b) => {
                    serde_json::from_slice::<ProbesDocument>(&b)
                        .map_err(|e| format!("its probes are not probe rows: {e}"))?
                        .items
                }
                Err(_) => Vec::new(),
            };
            Ok::<_, String>((report, rows))
        };
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok((report, rows))) => Gathered {
                node: entry(AgentAnswer::Answered, Some(report)),
                rows,
            },
            Ok(Err(why)) => Gathered {
                node: entry(AgentAnswer::NoAnswer(why), None),
                rows: Vec::new(),
            },
            Err(_) => Gathered {
                node: entry(
                    AgentAnswer::NoAnswer(format!("no answer within {:?}", self.timeout)),
                    None,
                ),
                rows: Vec::new(),
            },
        }
    }

    /// `GET path` of the agent at `addr`: the body of a 200 answer.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<Bytes, String> {
        get(addr, path, self.token.as_deref()).await
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

/// Where the agent of a node with `address` answers, given the agents' port.
pub fn agent_addr(address: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(address, port)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = g
            .all(vec![
                Source {
                    roles: vec![],
                    name: "quiet".into(),
                    agent: Some(silent_addr),
                },
                Source {
                    roles: vec![],
                    name: "gone".into(),
                    agent: Some(closed_addr),
                },
                Source {
                    roles: vec![],
                    name: "none".into(),
                    agent: None,
                },
            ])
            .await;
        assert_eq!(out.len(), 3);
        assert!(
            matches!(&out[0].node.agent, AgentAnswer::NoAnswer(w) if w.contains("no answer within")),
            "{:?}",
            out[0].node
        );
        assert!(
            matches!(&out[1].node.agent, AgentAnswer::NoAnswer(w) if w.contains("cannot connect")),
            "{:?}",
            out[1].node
        );
        assert_eq!(out[2].node.agent, AgentAnswer::NoAgent);
        assert!(
            out.iter()
                .all(|g| g.rows.is_empty() && g.node.report.is_none())
        );
        drop(silent);
    }
}
