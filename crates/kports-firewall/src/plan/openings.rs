//! Accepts in other tables' chains. An accept in kports's own table or chain ends only that
//! base chain; a drop in another one (a rule, or a `policy drop`) still blocks the connection.
//! Where the ruleset after the plan would still block a wanted (source, port), the script
//! inserts a narrow accept (the same source and port as kports's own rule) into the chain of the
//! deciding drop, just before it, with a comment that starts with [`TAG`]. Such rules are
//! kports's: a plan judges the ruleset without them, keeps the ones it still wants, adds the
//! missing ones (each only if it is not there yet, so running the script twice changes nothing)
//! and deletes the ones it no longer wants; `--remove` deletes them all.

use super::*;

/// What the comment of every accept kports adds to another chain starts with.
pub const TAG: &str = "kports: ";

/// The longest tag comment (nft takes 128 bytes).
const TAG_MAX: usize = 120;

/// An accept the plan adds to (or keeps in) a chain outside kports's own table or chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opening {
    pub port: String,
    pub source: String,
    /// The rule (or the chain's policy) that would block the connection without it: the
    /// accept goes right before it.
    pub before: RuleRef,
    /// The comment that marks it as kports's.
    pub comment: String,
    /// The command that adds it.
    pub command: String,
    /// It is in that chain already.
    pub present: bool,
}

/// A rule kports added to a chain outside its own table or chain, found in a ruleset.
#[derive(Debug, Clone)]
pub(super) struct Tagged {
    pub backend: Backend,
    pub family: TableFamily,
    /// `inet hostfw`, `ip filter`.
    pub table: String,
    pub chain: String,
    pub rule: Rule,
    pub comment: String,
}

/// Whether a chain is kports's own (its nft table, or its iptables chain).
pub(super) fn is_own(backend: Backend, table: &str, chain: &str) -> bool {
    match backend {
        Backend::Nft => table == format!("inet {NFT_TABLE}"),
        Backend::IptablesNft | Backend::IptablesLegacy => chain == IPT_CHAIN,
    }
}

fn table_label(t: &Table) -> String {
    format!("{} {}", t.family.as_str(), t.name)
}

/// The tag comment of a rule's text (`... comment "kports: ..."` in nft, `--comment "kports:
/// ..."` in iptables), without the quotes.
fn tag_of(text: &str) -> Option<&str> {
    let start = text.find(&format!("comment \"{TAG}"))? + "comment \"".len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// `rs` without the rules kports added to other chains, and those rules.
pub(super) fn split_tagged(rs: &Ruleset) -> (Ruleset, Vec<Tagged>) {
    let mut base = rs.clone();
    let mut tagged = Vec::new();
    for t in &mut base.tables {
        let label = table_label(t);
        for c in &mut t.chains {
            if is_own(t.backend, &label, &c.name) {
                continue;
            }
            let mut kept = Vec::with_capacity(c.rules.len());
            for r in std::mem::take(&mut c.rules) {
                match tag_of(&r.text).map(str::to_string) {
                    Some(comment) if r.action == Action::Accept => tagged.push(Tagged {
                        backend: t.backend,
                        family: t.family,
                        table: label.clone(),
                        chain: c.name.clone(),
                        rule: r,
                        comment,
                    }),
                    _ => kept.push(r),
                }
            }
            c.rules = kept;
        }
    }
    (base, tagged)
}

/// An accept to insert: where, and what it lets in.
#[derive(Debug, Clone)]
pub(super) struct Insert {
    before: RuleRef,
    port: RequiredPort,
    src: AddrRange,
    comment: String,
}

impl Insert {
    fn new(before: RuleRef, port: RequiredPort, src: AddrRange) -> Insert {
        let comment = tag_comment(&port, src);
        Insert {
            before,
            port,
            src,
            comment,
        }
    }

    /// The rule as its tool prints it, and as it goes on a command line after the chain.
    fn rule_text(&self) -> String {
        let (p, ports) = (self.port.proto.as_str(), (self.port.lo, self.port.hi));
        match self.before.backend {
            Backend::Nft => format!(
                "{} saddr {} {p} dport {} accept comment \"{}\"",
                if self.src.v6 { "ip6" } else { "ip" },
                self.src,
                port_nft(ports.0, ports.1),
                self.comment
            ),
            Backend::IptablesNft | Backend::IptablesLegacy => format!(
                "{} -p {p} -m {p} --dport {} -m comment --comment \"{}\" -j ACCEPT",
                ipt_source(self.src),
                port_ipt(ports.0, ports.1),
                self.comment
            ),
        }
    }

    fn model(&self) -> Rule {
        let text = match self.before.backend {
            Backend::Nft => self.rule_text(),
            _ => format!("-A {} {}", self.before.chain, self.rule_text()),
        };
        Rule {
            handle: None,
            text,
            conds: vec![
                Cond {
                    key: Key::Addr {
                        dir: Dir::Src,
                        v6: Some(self.src.v6),
                    },
                    neg: false,
                    rhs: Rhs::Vals(vec![Val::Addr(self.src)]),
                },
                Cond {
                    key: Key::Port {
                        dir: Dir::Dst,
                        proto: Some(self.port.proto_number()),
                    },
                    neg: false,
                    rhs: Rhs::Vals(vec![Val::Int(self.port.lo.into(), self.port.hi.into())]),
                },
            ],
            action: Action::Accept,
        }
    }

    /// The command that adds the accept before the deciding rule, or at the end of the chain
    /// for its policy.
    fn command(&self) -> String {
        let b = &self.before;
        match b.backend {
            Backend::Nft => {
                let at = match (b.handle, b.position) {
                    (Some(h), _) => format!("insert rule {} {} position {h}", b.table, b.chain),
                    (None, Some(pos)) => {
                        format!("insert rule {} {} index {}", b.table, b.chain, pos - 1)
                    }
                    (None, None) => format!("add rule {} {}", b.table, b.chain),
                };
                format!("nft '{at} {}'", self.rule_text())
            }
            Backend::IptablesNft | Backend::IptablesLegacy => {
                let at = match b.position {
                    Some(pos) => format!("-I {} {pos}", b.chain),
                    None => format!("-A {}", b.chain),
                };
                format!("{} {at} {}", ipt_command(b, self.src.v6), self.rule_text())
            }
        }
    }

    /// The script lines: add it unless it is there already.
    fn script(&self) -> String {
        let b = &self.before;
        match b.backend {
            Backend::Nft => format!(
                "if ! nft list chain {} {} | grep -qF 'comment \"{}\"'; then\n  {}\nfi\n",
                b.table,
                b.chain,
                self.comment,
                self.command()
            ),
            Backend::IptablesNft | Backend::IptablesLegacy => format!(
                "{} -C {} {} 2>/dev/null || {}\n",
                ipt_command(b, self.src.v6),
                b.chain,
                self.rule_text(),
                self.command()
            ),
        }
    }

    fn same_as(&self, o: &Insert) -> bool {
        self.before == o.before && self.comment == o.comment
    }

    fn same_place(&self, t: &Tagged) -> bool {
        t.backend == self.before.backend
            && t.table == self.before.table
            && t.chain == self.before.chain
            && t.comment == self.comment
    }
}

/// `iptables-nft -w -t filter` (the variant, family and table of `at`).
fn ipt_command(at: &RuleRef, v6: bool) -> String {
    let v = if at.backend == Backend::IptablesLegacy {
        "legacy"
    } else {
        "nft"
    };
    let (_, table) = at.table.split_once(' ').unwrap_or(("", at.table.as_str()));
    format!(
        "{}-{v} -w -t {table}",
        if v6 { "ip6tables" } else { "iptables" }
    )
}

/// `-s 192.0.2.0/24`, or `-m iprange --src-range A-B` for a range that is not a prefix.
pub(super) fn ipt_source(s: AddrRange) -> String {
    match s.prefix_len() {
        Some(l) => format!("-s {}/{l}", s.first()),
        None => format!("-m iprange --src-range {s}"),
    }
}

/// `kports: kubelet tcp/10250 from 192.0.2.11`, with only characters that are safe in a shell
/// word, in an nft string and in an iptables comment.
fn tag_comment(port: &RequiredPort, src: AddrRange) -> String {
    let text = format!("{TAG}{} {} from {src}", port.component, port.label());
    let mut s: String = text
        .chars()
        .map(|c| if safe_char(c) { c } else { '_' })
        .collect();
    s.truncate(TAG_MAX);
    s
}

fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ._-/:,".contains(c)
}

/// Whether a name read from the ruleset can go into the script as it is.
fn safe_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| safe_char(c) && c != ' ' && c != ',')
}

/// Whether a rule text read from the ruleset (an `iptables-save` line) can go into the script
/// as it is: the characters kports writes, and quotes only around one comment.
fn safe_rule_text(s: &str) -> bool {
    s.chars().all(|c| safe_char(c) || c == '"' || c == '!') && s.matches('"').count() <= 2
}

/// Whether an accept can be written before `by`: a chain kports does not own, a table and a
/// chain whose names are safe in a script.
fn insertable(by: &RuleRef) -> bool {
    let (fam, name) = by.table.split_once(' ').unwrap_or(("", ""));
    !is_own(by.backend, &by.table, &by.chain)
        && ["ip", "ip6", "inet"].contains(&fam)
        && safe_name(name)
        && safe_name(&by.chain)
}

/// The accepts that open every wanted connection `sim` (the ruleset with kports's own table or
/// chain in place) still blocks; `sim` gets them too. Blocks that cannot be opened this way stay
/// in `sim`, where the plan's conflicts find them.
///
/// It judges again after each round of inserts: an accept in one base chain can let the packet
/// on to a drop in the next base chain it passes (or in a chain the accept's chain jumps to).
/// Every insert takes one deciding drop off a packet's way, so the rounds end; they are bounded
/// by the number of rules and policies, and end early when a round opens nothing new.
pub(super) fn open_elsewhere(sim: &mut Ruleset, allows: &[Allow]) -> Vec<Insert> {
    let mut out: Vec<Insert> = Vec::new();
    let rounds: usize = sim
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len() + 1)
        .sum();
    for _ in 0..rounds {
        let mut found: Vec<Insert> = blockers(&Evaluator::new(sim), allows)
            .into_iter()
            .filter(|b| insertable(&b.by))
            .map(|b| Insert::new(b.by, b.port, b.src))
            .filter(|i| !out.iter().any(|o| o.same_as(i)))
            .collect();
        if found.is_empty() {
            break;
        }
        // Later positions first, so that each insert leaves the positions of the others in its
        // chain as they are; a policy's accept goes at the end.
        found.sort_by_key(|i| std::cmp::Reverse(i.before.position.unwrap_or(usize::MAX)));
        for i in &found {
            let Some(chain) = sim
                .tables
                .iter_mut()
                .find(|t| t.backend == i.before.backend && table_label(t) == i.before.table)
                .and_then(|t| {
                    let id = t.chain_id(&i.before.chain)?;
                    t.chains.get_mut(id)
                })
            else {
                continue;
            };
            let at = i
                .before
                .position
                .map_or(chain.rules.len(), |p| (p - 1).min(chain.rules.len()));
            chain.rules.insert(at, i.model());
        }
        out.extend(found);
    }
    out
}

/// What the script does with accepts in other chains: delete the tagged rules no longer wanted,
/// then add the wanted ones that are missing. Returns the script part and the openings.
pub(super) fn openings_script(inserts: &[Insert], tagged: &[Tagged]) -> (String, Vec<Opening>) {
    let mut claimed = vec![false; tagged.len()];
    let mut openings = Vec::with_capacity(inserts.len());
    for i in inserts {
        let present = match tagged
            .iter()
            .enumerate()
            .position(|(k, t)| !claimed[k] && i.same_place(t))
        {
            Some(k) => {
                claimed[k] = true;
                true
            }
            None => false,
        };
        openings.push(Opening {
            port: i.port.label(),
            source: i.src.to_string(),
            before: i.before.clone(),
            comment: i.comment.clone(),
            command: i.command(),
            present,
        });
    }
    let mut s = String::new();
    let stale: Vec<&Tagged> = tagged
        .iter()
        .zip(&claimed)
        .filter(|(_, c)| !**c)
        .map(|(t, _)| t)
        .collect();
    if stale.is_empty() && inserts.is_empty() {
        return (s, openings);
    }
    s.push_str("# Accepts in other tables' chains, before the rule that would still block a wanted connection\n");
    for t in stale {
        if let Some(d) = delete_tagged(t) {
            s.push_str(&d);
        }
    }
    for i in inserts {
        s.push_str(&i.script());
    }
    (s, openings)
}

/// The script lines that delete a tagged rule if it is still there; `None` when its names or
/// text hold characters kports does not write into a script.
pub(super) fn delete_tagged(t: &Tagged) -> Option<String> {
    let (_, name) = t.table.split_once(' ')?;
    if !safe_name(name) || !safe_name(&t.chain) || !t.comment.chars().all(safe_char) {
        return None;
    }
    match t.backend {
        Backend::Nft => {
            let h = t.rule.handle?;
            Some(format!(
                "if nft -a list chain {} {} | grep -qF 'comment \"{}\" # handle {h}'; then\n  nft delete rule {} {} handle {h}\nfi\n",
                t.table, t.chain, t.comment, t.table, t.chain
            ))
        }
        Backend::IptablesNft | Backend::IptablesLegacy => {
            let spec = t.rule.text.strip_prefix("-A ")?;
            if !safe_rule_text(spec) {
                return None;
            }
            let at = RuleRef {
                backend: t.backend,
                table: t.table.clone(),
                chain: t.chain.clone(),
                position: None,
                handle: None,
                text: String::new(),
            };
            let cmd = ipt_command(&at, t.family == TableFamily::Ip6);
            Some(format!(
                "if {cmd} -C {spec} 2>/dev/null; then\n  {cmd} -D {spec}\nfi\n"
            ))
        }
    }
}

/// `kports firewall plan --remove`: what it takes out, and the script that does it.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// A shell script that takes out everything kports added (safe to run twice).
    pub script: String,
    /// What the script takes out, one line each.
    pub removes: Vec<String>,
    pub notes: Vec<String>,
}

/// Everything kports added to `rs`: its nft table, its iptables chains and the jumps to them,
/// the accepts it tagged in other chains, and an iptables-nft filter table that holds nothing
/// else (iptables-nft makes it for kports's chain; empty, it has no effect).
pub fn removal(rs: &Ruleset) -> Removal {
    let mut script = String::new();
    let mut removes = Vec::new();
    let mut notes = Vec::new();
    let (_, tagged) = split_tagged(rs);
    for t in &tagged {
        let what = format!(
            "{} {} {}: {}",
            t.backend.as_str(),
            t.table,
            t.chain,
            t.rule.text
        );
        match delete_tagged(t) {
            Some(d) => {
                script.push_str(&d);
                removes.push(what);
            }
            None => notes.push(format!(
                "not removed, its names hold characters kports does not write into a script: {what}"
            )),
        }
    }
    for t in &rs.tables {
        match t.backend {
            Backend::Nft if t.family == TableFamily::Inet && t.name == NFT_TABLE => {
                let _ = writeln!(
                    script,
                    "if nft list table inet {NFT_TABLE} >/dev/null 2>&1; then\n  nft delete table inet {NFT_TABLE}\nfi"
                );
                removes.push(format!("nft table inet {NFT_TABLE}"));
            }
            Backend::IptablesNft | Backend::IptablesLegacy
                if t.name == "filter" && t.chain(IPT_CHAIN).is_some() =>
            {
                let at = RuleRef {
                    backend: t.backend,
                    table: table_label(t),
                    chain: IPT_CHAIN.into(),
                    position: None,
                    handle: None,
                    text: String::new(),
                };
                let cmd = ipt_command(&at, t.family == TableFamily::Ip6);
                let jumps =
                    |a: &Action| matches!(a, Action::Jump(c) | Action::Goto(c) if c == IPT_CHAIN);
                for c in &t.chains {
                    for r in c.rules.iter().filter(|r| jumps(&r.action)) {
                        match r.text.strip_prefix("-A ").filter(|s| safe_rule_text(s)) {
                            Some(spec) => {
                                let _ = writeln!(
                                    script,
                                    "if {cmd} -C {spec} 2>/dev/null; then\n  {cmd} -D {spec}\nfi"
                                );
                            }
                            None => notes.push(format!(
                                "not removed, its text holds characters kports does not write into a script: {}",
                                r.text
                            )),
                        }
                    }
                }
                let _ = writeln!(
                    script,
                    "if {cmd} -n -L {IPT_CHAIN} >/dev/null 2>&1; then\n  {cmd} -F {IPT_CHAIN}\n  {cmd} -X {IPT_CHAIN}\nfi"
                );
                removes.push(format!(
                    "{} {} chain {IPT_CHAIN} and the jumps to it",
                    t.backend.as_str(),
                    table_label(t)
                ));
                if t.backend == Backend::IptablesNft && empty_without_kports(t) {
                    // The built-in chains' policies are checked when the script runs (the
                    // ruleset as read holds only those of the input path).
                    let label = table_label(t);
                    let save = if t.family == TableFamily::Ip6 {
                        "ip6tables-nft-save"
                    } else {
                        "iptables-nft-save"
                    };
                    let _ = writeln!(
                        script,
                        "if nft list table {label} >/dev/null 2>&1 && [ -z \"$({save} -t filter | grep -v -e '^#' -e '^\\*filter$' -e '^COMMIT$' -e '^:INPUT ACCEPT' -e '^:FORWARD ACCEPT' -e '^:OUTPUT ACCEPT')\" ]; then\n  nft delete table {label}\nfi"
                    );
                    removes.push(format!(
                        "iptables-nft table {label}, when it holds nothing else"
                    ));
                }
            }
            _ => {}
        }
    }
    if removes.is_empty() {
        notes.push("kports has added nothing to this node's firewall".into());
    }
    Removal {
        script,
        removes,
        notes,
    }
}

/// Whether an iptables table holds nothing but kports's chain, the jumps to it, kports's tagged
/// accepts and built-in chains: without kports, it has no effect if their policies accept.
fn empty_without_kports(t: &Table) -> bool {
    t.chains.iter().all(|c| {
        c.name == IPT_CHAIN
            || (["INPUT", "FORWARD", "OUTPUT"].contains(&c.name.as_str())
                && c.base.as_ref().is_none_or(|b| b.policy == Policy::Accept)
                && c.rules.iter().all(|r| {
                    matches!(&r.action, Action::Jump(x) | Action::Goto(x) if x == IPT_CHAIN)
                        || (r.action == Action::Accept && tag_of(&r.text).is_some())
                }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> AddrRange {
        parse_cidr(s).unwrap()
    }

    fn kubelet() -> RequiredPort {
        RequiredPort::new(
            Proto::Tcp,
            10250,
            10250,
            SourceKind::ControlPlane,
            "kubelet",
        )
    }

    fn rule_ref(
        backend: Backend,
        table: &str,
        position: Option<usize>,
        handle: Option<u64>,
    ) -> RuleRef {
        RuleRef {
            backend,
            table: table.into(),
            chain: if backend == Backend::Nft {
                "input"
            } else {
                "INPUT"
            }
            .into(),
            position,
            handle,
            text: "policy drop".into(),
        }
    }

    #[test]
    fn an_nft_accept_goes_before_the_deciding_rule_by_handle_or_at_the_end_for_a_policy() {
        let i = Insert::new(
            rule_ref(Backend::Nft, "inet hostfw", Some(3), Some(7)),
            kubelet(),
            cidr("192.0.2.11"),
        );
        assert_eq!(
            i.command(),
            "nft 'insert rule inet hostfw input position 7 ip saddr 192.0.2.11 tcp dport 10250 accept comment \"kports: kubelet tcp/10250 from 192.0.2.11\"'"
        );
        assert_eq!(
            i.script(),
            format!(
                "if ! nft list chain inet hostfw input | grep -qF 'comment \"kports: kubelet tcp/10250 from 192.0.2.11\"'; then\n  {}\nfi\n",
                i.command()
            )
        );
        let policy = Insert::new(
            rule_ref(Backend::Nft, "inet hostfw", None, None),
            RequiredPort::new(Proto::Udp, 30000, 32767, SourceKind::All, "kube-proxy"),
            cidr("2001:db8::/64"),
        );
        assert_eq!(
            policy.command(),
            "nft 'add rule inet hostfw input ip6 saddr 2001:db8::/64 udp dport 30000-32767 accept comment \"kports: kube-proxy udp/30000-32767 from 2001:db8::/64\"'"
        );
    }

    #[test]
    fn an_iptables_accept_is_checked_before_it_is_inserted_at_the_deciding_position() {
        let i = Insert::new(
            rule_ref(Backend::IptablesLegacy, "ip filter", Some(4), None),
            kubelet(),
            AddrRange {
                v6: false,
                lo: u128::from(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 12))),
                hi: u128::from(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 20))),
            },
        );
        let spec = "-m iprange --src-range 192.0.2.12-192.0.2.20 -p tcp -m tcp --dport 10250 -m comment --comment \"kports: kubelet tcp/10250 from 192.0.2.12-192.0.2.20\" -j ACCEPT";
        assert_eq!(
            i.script(),
            format!(
                "iptables-legacy -w -t filter -C INPUT {spec} 2>/dev/null || iptables-legacy -w -t filter -I INPUT 4 {spec}\n"
            )
        );
        let policy = Insert::new(
            rule_ref(Backend::IptablesNft, "ip6 filter", None, None),
            kubelet(),
            cidr("2001:db8::11"),
        );
        assert!(
            policy
                .command()
                .starts_with("ip6tables-nft -w -t filter -A INPUT -s 2001:db8::11/128 -p tcp"),
            "{}",
            policy.command()
        );
    }

    #[test]
    fn comments_keep_to_characters_safe_in_a_script() {
        let odd = RequiredPort::new(Proto::Tcp, 1, 1, SourceKind::All, "it's \"$(x)\"");
        let c = tag_comment(&odd, cidr("192.0.2.1"));
        assert_eq!(c, "kports: it_s ___x__ tcp/1 from 192.0.2.1");
        let long = RequiredPort::new(Proto::Tcp, 1, 1, SourceKind::All, &"x".repeat(300));
        assert_eq!(tag_comment(&long, cidr("192.0.2.1")).len(), TAG_MAX);
    }

    /// A host firewall of its own: `inet hostfw input`, policy drop, loopback accepted.
    fn hostfw() -> Ruleset {
        let mut t = Table::new(Backend::Nft, TableFamily::Inet, "hostfw");
        let c = t.chain_mut("input");
        c.base = Some(BaseChain {
            hook: Hook::Input,
            priority: 0,
            kind: ChainType::Filter,
            policy: Policy::Drop,
        });
        c.rules.push(Rule {
            handle: Some(2),
            text: "iifname \"lo\" accept".into(),
            conds: vec![Cond {
                key: Key::Iifname,
                neg: false,
                rhs: Rhs::Vals(vec![Val::Str("lo".into())]),
            }],
            action: Action::Accept,
        });
        Ruleset {
            tables: vec![t],
            unread: Vec::new(),
        }
    }

    fn allow() -> Vec<Allow> {
        vec![Allow {
            port: kubelet(),
            sources: vec![cidr("192.0.2.11")],
        }]
    }

    #[test]
    fn a_policy_drop_elsewhere_gets_one_accept_and_then_lets_the_connection_in() {
        let mut sim = hostfw();
        let inserts = open_elsewhere(&mut sim, &allow());
        assert_eq!(inserts.len(), 1, "{inserts:?}");
        assert_eq!(inserts[0].before.text, "policy drop");
        let rules = &sim.tables[0].chains[0].rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[1].text,
            "ip saddr 192.0.2.11 tcp dport 10250 accept comment \"kports: kubelet tcp/10250 from 192.0.2.11\""
        );
        assert!(blockers(&Evaluator::new(&sim), &allow()).is_empty());
    }

    #[test]
    fn drops_in_one_base_chain_after_another_are_each_opened() {
        // Six tables, each a base chain that drops all, one after another by priority: each
        // round opens the chain the packet reaches next.
        let mut sim = Ruleset::default();
        for i in 0..6 {
            let mut t = Table::new(Backend::Nft, TableFamily::Inet, format!("deny{i}"));
            t.chain_mut("input").base = Some(BaseChain {
                hook: Hook::Input,
                priority: i,
                kind: ChainType::Filter,
                policy: Policy::Drop,
            });
            sim.tables.push(t);
        }
        let inserts = open_elsewhere(&mut sim, &allow());
        let tables: Vec<&str> = inserts.iter().map(|i| i.before.table.as_str()).collect();
        assert_eq!(
            tables,
            [
                "inet deny0",
                "inet deny1",
                "inet deny2",
                "inet deny3",
                "inet deny4",
                "inet deny5"
            ]
        );
        assert!(blockers(&Evaluator::new(&sim), &allow()).is_empty());
    }

    #[test]
    fn a_drop_no_accept_can_be_written_before_stays_and_the_rounds_end() {
        let mut sim = hostfw();
        // A chain name kports does not write into a script.
        let mut t = Table::new(Backend::Nft, TableFamily::Inet, "odd");
        t.chain_mut("in put").base = Some(BaseChain {
            hook: Hook::Input,
            priority: 5,
            kind: ChainType::Filter,
            policy: Policy::Drop,
        });
        sim.tables.push(t);
        let inserts = open_elsewhere(&mut sim, &allow());
        assert_eq!(inserts.len(), 1, "{inserts:?}");
        let left = blockers(&Evaluator::new(&sim), &allow());
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].by.table, "inet odd");
    }

    #[test]
    fn tagged_accepts_already_there_are_kept_and_the_others_deleted() {
        let mut rs = hostfw();
        let chain = &mut rs.tables[0].chains[0];
        let tagged = |h: u64, src: &str| Rule {
            handle: Some(h),
            text: format!(
                "ip saddr {src} tcp dport 10250 accept comment \"kports: kubelet tcp/10250 from {src}\""
            ),
            conds: Vec::new(),
            action: Action::Accept,
        };
        chain.rules.push(tagged(5, "192.0.2.11"));
        chain.rules.push(tagged(6, "192.0.2.99"));
        let (mut base, found) = split_tagged(&rs);
        assert_eq!(found.len(), 2);
        assert_eq!(base.tables[0].chains[0].rules.len(), 1);
        let inserts = open_elsewhere(&mut base, &allow());
        let (script, openings) = openings_script(&inserts, &found);
        assert_eq!(openings.len(), 1);
        assert!(openings[0].present, "{openings:?}");
        assert!(
            script.contains("grep -qF 'comment \"kports: kubelet tcp/10250 from 192.0.2.99\" # handle 6'; then\n  nft delete rule inet hostfw input handle 6\nfi\n"),
            "{script}"
        );
        assert!(!script.contains("handle 5"), "{script}");
        // A second plan over the same ruleset writes the same script: nothing piles up.
        let (mut again, found) = split_tagged(&rs);
        let inserts = open_elsewhere(&mut again, &allow());
        assert_eq!(openings_script(&inserts, &found).0, script);
    }

    #[test]
    fn removal_takes_out_the_table_the_chains_and_every_tagged_accept() {
        let mut rs = hostfw();
        rs.tables[0].chains[0].rules.push(Rule {
            handle: Some(9),
            text: "ip saddr 192.0.2.11 tcp dport 10250 accept comment \"kports: kubelet tcp/10250 from 192.0.2.11\"".into(),
            conds: Vec::new(),
            action: Action::Accept,
        });
        rs.tables
            .push(Table::new(Backend::Nft, TableFamily::Inet, NFT_TABLE));
        let (ipt, _) = crate::iptables::parse_save(
            "*filter\n:INPUT ACCEPT [0:0]\n:KPORTS-INPUT - [0:0]\n-A INPUT -j KPORTS-INPUT\n-A KPORTS-INPUT -i lo -j ACCEPT\nCOMMIT\n",
            Backend::IptablesNft,
            false,
        );
        rs.tables.extend(ipt);
        let (legacy, _) = crate::iptables::parse_save(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment \"kports: kubelet tcp/10250 from 192.0.2.11\" -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n",
            Backend::IptablesLegacy,
            false,
        );
        rs.tables.extend(legacy);
        let r = removal(&rs);
        assert_eq!(r.removes.len(), 5, "{:#?}", r.removes);
        for part in [
            "nft delete rule inet hostfw input handle 9\n",
            "nft delete table inet kports\n",
            "iptables-nft -w -t filter -D INPUT -j KPORTS-INPUT\n",
            "iptables-nft -w -t filter -X KPORTS-INPUT\n",
            "[ -z \"$(iptables-nft-save -t filter | grep -v -e '^#' -e '^\\*filter$' -e '^COMMIT$' -e '^:INPUT ACCEPT' -e '^:FORWARD ACCEPT' -e '^:OUTPUT ACCEPT')\" ]; then\n  nft delete table ip filter\n",
            "iptables-legacy -w -t filter -D INPUT -s 192.0.2.11/32 -p tcp -m tcp --dport 10250 -m comment --comment \"kports: kubelet tcp/10250 from 192.0.2.11\" -j ACCEPT\n",
        ] {
            assert!(r.script.contains(part), "{part}\n{}", r.script);
        }
        // The legacy table holds the host's own rules: only kports's accept leaves it.
        assert!(!r.script.contains("-F INPUT"), "{}", r.script);
        let nothing = removal(&hostfw());
        assert!(nothing.script.is_empty());
        assert_eq!(
            nothing.notes,
            ["kports has added nothing to this node's firewall"]
        );
    }

    #[test]
    fn a_rule_text_with_shell_characters_is_not_written_into_a_script() {
        assert!(safe_rule_text(
            "INPUT -s 192.0.2.11/32 -p tcp -m comment --comment \"kports: x\" -j ACCEPT"
        ));
        assert!(!safe_rule_text(
            "INPUT -m comment --comment \"kports: $(x)\" -j ACCEPT"
        ));
        assert!(!safe_rule_text("INPUT -j ACCEPT; reboot"));
        assert!(!safe_name("in put"));
        assert!(safe_name("hostfw"));
    }
}
