//! kubespray's older INI inventories (`inventory.ini`): `[group]` sections of host lines
//! (`node1 ansible_host=95.54.0.12 ip=10.3.0.1`), `[group:children]` sections of group names,
//! and `[group:vars]` sections, which kports does not need.

use super::kubespray::{Tree, Var, Vars};
use super::{Error, Errs, Format, Inventory};

enum Section {
    Hosts(String),
    Children(String),
    Vars,
}

pub(super) fn parse(text: &str, e: Errs<'_>) -> Result<Inventory, Error> {
    let mut tree = Tree::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    for (i, raw) in text.lines().enumerate() {
        let line_no = Some(i as u64 + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| e.at(line_no, format!("`{line}`: a section header ends with ]")))?
                .trim();
            section = match name.split_once(':') {
                None => Section::Hosts(name.to_string()),
                Some((g, "children")) => Section::Children(g.to_string()),
                Some((_, "vars")) => Section::Vars,
                Some((_, kind)) => {
                    return Err(e.at(
                        line_no,
                        format!("`[{name}]`: `{kind}` is not children or vars"),
                    ));
                }
            };
            if let Section::Hosts(g) | Section::Children(g) = &section {
                tree.group(g);
            }
            continue;
        }
        match &section {
            Section::Vars => {}
            Section::Children(g) => {
                let child = line.to_string();
                tree.group(&child);
                tree.group(g).1.push(child);
            }
            Section::Hosts(g) => {
                let mut words = line.split_whitespace();
                let Some(host) = words.next() else { continue };
                let mut vars = Vars::default();
                for w in words {
                    let (k, v) = w.split_once('=').ok_or_else(|| {
                        e.at(line_no, format!("`{w}`: host variables are key=value"))
                    })?;
                    let value = Some(Var {
                        value: v.trim_matches(['"', '\'']).to_string(),
                        line: line_no,
                    });
                    match k {
                        "ansible_host" => vars.ansible_host = value,
                        "ip" => vars.ip = value,
                        "access_ip" => vars.access_ip = value,
                        "ip6" => vars.ip6 = value,
                        "access_ip6" => vars.access_ip6 = value,
                        "ansible_user" => vars.ansible_user = value,
                        _ => {}
                    }
                }
                tree.host(host, vars);
                tree.group(g).0.push(host.to_string());
            }
        }
    }
    tree.assemble(Format::KubesprayIni, e)
}
