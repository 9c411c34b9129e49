//! kubespray's `inventory/*/hosts.yaml`, read as it is: hosts and their variables anywhere in
//! the group tree, roles from the groups `kube_control_plane` (or `kube-master`), `etcd` and
//! `kube_node` (or `kube-node`), through nested `children`. A node's address is `access_ip`,
//! else `ip`, else `ansible_host` (kubespray's own order: `access_ip` is the one other nodes use);
//! its IPv6 address `access_ip6`, else `ip6`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::kports::yaml_error;
use super::{Error, Errs, Format, Inventory, Node, parse_ip, role_of_group};

/// A value with the line it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Var {
    pub value: String,
    pub line: Option<u64>,
}

/// The variables kports reads from a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Vars {
    pub ansible_host: Option<Var>,
    pub ip: Option<Var>,
    pub access_ip: Option<Var>,
    pub ip6: Option<Var>,
    pub access_ip6: Option<Var>,
    pub ansible_user: Option<Var>,
}

impl Vars {
    /// Fills what `self` lacks from `other` (a host's variables may be split over groups).
    pub fn merge(&mut self, other: Vars) {
        let fill = |a: &mut Option<Var>, b: Option<Var>| {
            if a.is_none() {
                *a = b;
            }
        };
        fill(&mut self.ansible_host, other.ansible_host);
        fill(&mut self.ip, other.ip);
        fill(&mut self.access_ip, other.access_ip);
        fill(&mut self.ip6, other.ip6);
        fill(&mut self.access_ip6, other.access_ip6);
        fill(&mut self.ansible_user, other.ansible_user);
    }
}

/// Groups and hosts as read from either kubespray format.
#[derive(Debug, Default)]
pub(super) struct Tree {
    /// Every host in the order first seen, with its variables.
    pub hosts: Vec<(String, Vars)>,
    /// Group name to its direct hosts and child groups.
    pub groups: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl Tree {
    pub fn host(&mut self, name: &str, vars: Vars) {
        match self.hosts.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.merge(vars),
            None => self.hosts.push((name.to_string(), vars)),
        }
    }

    pub fn group(&mut self, name: &str) -> &mut (Vec<String>, Vec<String>) {
        self.groups.entry(name.to_string()).or_default()
    }

    /// Every host of `group`, through its children (cycles are cut).
    fn members(&self, group: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![group.to_string()];
        while let Some(g) = stack.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            if let Some((hosts, children)) = self.groups.get(&g) {
                out.extend(hosts.iter().cloned());
                stack.extend(children.iter().cloned());
            }
        }
        out
    }

    /// The inventory: every host in a role group, with its address.
    pub fn assemble(self, format: Format, e: Errs<'_>) -> Result<Inventory, Error> {
        let mut role_groups: Vec<&String> = self
            .groups
            .keys()
            .filter(|g| role_of_group(g).is_some())
            .collect();
        role_groups.sort();
        let members: Vec<_> = role_groups
            .iter()
            .filter_map(|g| Some((role_of_group(g)?, self.members(g))))
            .collect();
        let mut nodes = Vec::new();
        let mut skipped = Vec::new();
        for (name, vars) in &self.hosts {
            let mut roles: Vec<_> = members
                .iter()
                .filter(|(_, m)| m.contains(name))
                .map(|(r, _)| *r)
                .collect();
            roles.sort();
            roles.dedup();
            if roles.is_empty() {
                skipped.push(name.clone());
                continue;
            }
            nodes.push(node(name, vars, roles, e)?);
        }
        Ok(Inventory {
            format,
            nodes,
            skipped,
        })
    }
}

fn node(
    name: &str,
    vars: &Vars,
    roles: Vec<kports_core::catalog::Role>,
    e: Errs<'_>,
) -> Result<Node, Error> {
    let chosen = [
        ("access_ip", &vars.access_ip),
        ("ip", &vars.ip),
        ("ansible_host", &vars.ansible_host),
    ]
    .into_iter()
    .find_map(|(k, v)| v.as_ref().map(|v| (k, v)));
    let v6 = [("access_ip6", &vars.access_ip6), ("ip6", &vars.ip6)]
        .into_iter()
        .find_map(|(k, v)| v.as_ref().map(|v| (k, v)));
    let parse = |(k, v): (&str, &Var)| {
        parse_ip(&v.value).map_err(|m| e.at(v.line, format!("host `{name}`: {k}: {m}")))
    };
    let (address, address6) = match (chosen, v6) {
        (Some(a), six) => {
            let six = match six {
                Some(s) => match parse(s)? {
                    std::net::IpAddr::V6(a) => Some(a),
                    _ => return Err(e.at(s.1.line, format!("host `{name}`: {} is not IPv6", s.0))),
                },
                None => None,
            };
            (parse(a)?, six)
        }
        (None, Some(s)) => (parse(s)?, None),
        (None, None) => {
            return Err(e.at(
                None,
                format!("host `{name}` has no access_ip, ip or ansible_host"),
            ));
        }
    };
    let ssh = vars
        .ansible_host
        .as_ref()
        .map(|h| match &vars.ansible_user {
            Some(u) => format!("{}@{}", u.value, h.value),
            None => h.value.clone(),
        });
    Ok(Node {
        name: name.to_string(),
        address,
        address6,
        roles,
        ssh,
    })
}

#[derive(Debug, Deserialize)]
struct File {
    all: Option<Group>,
}

#[derive(Debug, Default, Deserialize)]
struct Group {
    #[serde(default)]
    hosts: Option<Ordered<Option<RawVars>>>,
    #[serde(default)]
    children: Option<Ordered<Option<Group>>>,
    #[serde(default)]
    #[allow(dead_code)]
    vars: Option<IgnoredAny>,
}

/// A host's variables as written; others (`ansible_port`, `etcd_member_name`, ...) are ignored.
#[derive(Debug, Default, Deserialize)]
struct RawVars {
    ansible_host: Option<Spanned<Scalar>>,
    ip: Option<Spanned<Scalar>>,
    access_ip: Option<Spanned<Scalar>>,
    ip6: Option<Spanned<Scalar>>,
    access_ip6: Option<Spanned<Scalar>>,
    ansible_user: Option<Spanned<Scalar>>,
}

/// Any scalar as text (a port written as a number, a name, an address).
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping kept in the file's order (hosts are listed as the user wrote them).
#[derive(Debug)]
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<V>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<Scalar, V>()? {
                    v.push((k.0, val));
                }
                Ok(Ordered(v))
            }
            // `hosts:` or `children:` with nothing under it.
            fn visit_unit<E: de::Error>(self) -> Result<Ordered<V>, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

fn var(s: Option<Spanned<Scalar>>) -> Option<Var> {
    s.map(|s| Var {
        value: s.value.0,
        line: Some(s.referenced.line()),
    })
}

fn walk(tree: &mut Tree, name: &str, g: Group) {
    let mut direct = Vec::new();
    for (h, vars) in g.hosts.map(|o| o.0).unwrap_or_default() {
        let v = vars.unwrap_or_default();
        tree.host(
            &h,
            Vars {
                ansible_host: var(v.ansible_host),
                ip: var(v.ip),
                access_ip: var(v.access_ip),
                ip6: var(v.ip6),
                access_ip6: var(v.access_ip6),
                ansible_user: var(v.ansible_user),
            },
        );
        direct.push(h);
    }
    let mut kids = Vec::new();
    for (c, child) in g.children.map(|o| o.0).unwrap_or_default() {
        kids.push(c.clone());
        if let Some(child) = child {
            walk(tree, &c, child);
        } else {
            tree.group(&c);
        }
    }
    let entry = tree.group(name);
    entry.0.extend(direct);
    entry.1.extend(kids);
}

pub(super) fn parse(text: &str, e: Errs<'_>) -> Result<Inventory, Error> {
    let f: File = serde_saphyr::from_str(text).map_err(|err| yaml_error(e, &err))?;
    let all = f
        .all
        .ok_or_else(|| e.at(None, "`all:` is empty: no hosts"))?;
    let mut tree = Tree::default();
    walk(&mut tree, "all", all);
    tree.assemble(Format::KubesprayYaml, e)
}
