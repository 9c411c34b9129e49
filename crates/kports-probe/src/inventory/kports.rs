//! kports's own inventory: `nodes:`, each with `name`, `address`, optional `address6`, `roles`
//! and optional `ssh`.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Error, Errs, Format, Inventory, Node, parse_ip};
use kports_core::catalog::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    nodes: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    address6: Option<Spanned<String>>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    ssh: Option<String>,
}

pub(super) fn parse(text: &str, e: Errs<'_>) -> Result<Inventory, Error> {
    let f: File = serde_saphyr::from_str(text).map_err(|err| yaml_error(e, &err))?;
    let mut nodes: Vec<Node> = Vec::with_capacity(f.nodes.len());
    for n in f.nodes {
        let line = |s: &Spanned<String>| Some(s.referenced.line());
        if n.name.value.trim().is_empty() {
            return Err(e.at(line(&n.name), "a node's name is empty"));
        }
        if nodes.iter().any(|m| m.name == n.name.value) {
            return Err(e.at(
                line(&n.name),
                format!("node `{}` is listed twice", n.name.value),
            ));
        }
        let address = parse_ip(&n.address.value).map_err(|m| e.at(line(&n.address), m))?;
        let address6 = match &n.address6 {
            None => None,
            Some(a) => match parse_ip(&a.value) {
                Ok(std::net::IpAddr::V6(v6)) => Some(v6),
                Ok(_) => {
                    return Err(e.at(line(a), format!("address6 `{}` is not IPv6", a.value)));
                }
                Err(m) => return Err(e.at(line(a), m)),
            },
        };
        nodes.push(Node {
            name: n.name.value,
            address,
            address6,
            roles: n.roles,
            ssh: n.ssh,
        });
    }
    Ok(Inventory {
        format: Format::Kports,
        nodes,
        skipped: Vec::new(),
    })
}

/// A YAML error as `file:line: message`, without the parser's multi-line snippet.
pub(super) fn yaml_error(e: Errs<'_>, err: &serde_saphyr::Error) -> Error {
    let text = err.to_string();
    let message = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("not valid YAML")
        .trim_start_matches("error: ")
        .to_string();
    e.at(err.location().map(|l| l.line()), message)
}
