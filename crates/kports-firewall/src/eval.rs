//! The evaluator: walks an inbound packet through every base chain it meets and names the rule
//! that decides.
//!
//! Netfilter's rules for the input path, as modelled here:
//! - every `filter` base chain at the prerouting and input hooks runs, in hook then priority
//!   order, whatever table (or backend: nft, iptables-nft, iptables-legacy) it belongs to;
//! - `accept` ends only the current base chain, the packet goes on to the next one; `drop` and
//!   `reject` anywhere are final; a packet that falls off a base chain meets its policy;
//! - `jump` returns to the next rule after the target chain ends or says `return`; `goto` does not.
//!
//! A condition kports cannot decide from the packet alone (a mark, an ipset, a source that is
//! only partly inside a prefix) forks the walk: both outcomes are followed, and if they differ
//! the answer is [`Judgement::Depends`] naming the condition. Forks are bounded, so a ruleset of
//! any size and shape gives an answer.
//!
//! The outcome of walking a chain depends only on the chain and the packet, so for one packet each
//! chain is walked once and its outcome reused by every later jump or goto to it. Every walk, a
//! reused one included, counts against a budget that grows with the ruleset's size; a ruleset
//! whose shape would still need more walks (jump loops, which the kernel refuses anyway) is
//! answered "unknown: ruleset too complex to judge", never by a hang.
//!
//! A long chain is indexed by the destination ports its rules require: a packet looks only at
//! the rules that require its port, and those that require none, so judging every port from
//! every source stays near linear in the number of rules.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

pub use crate::display::show_cond;
use crate::display::show_val;
use crate::model::*;

/// An inbound packet opening a new connection to a local port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub v6: bool,
    /// Transport protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub dport: u16,
    /// Where it comes from: one address, or every address of a CIDR.
    pub src: AddrRange,
    /// The node address it is sent to, if known.
    pub dst: Option<IpAddr>,
    /// The interface it arrives on, if known.
    pub iif: Option<String>,
}

/// A rule (or a chain's policy) that a verdict came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub backend: Backend,
    /// `ip filter`, `inet firewalld`.
    pub table: String,
    pub chain: String,
    /// 1-based position of the rule in its chain; absent for the chain's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The rule as its tool prints it, or `policy drop`.
    pub text: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.backend.as_str(), self.table, self.chain)?;
        match (self.position, self.handle) {
            (Some(p), Some(h)) => write!(f, " #{p} (handle {h})")?,
            (Some(p), None) => write!(f, " #{p}")?,
            _ => {}
        }
        write!(f, ": {}", self.text)
    }
}

/// The answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Judgement {
    /// Every base chain on the way let it through; `by` names each chain's deciding rule.
    Accept {
        by: Vec<RuleRef>,
    },
    Drop {
        by: RuleRef,
    },
    /// Refused with an answer: `with` is the kind (`tcp reset`, `icmp port-unreachable`, ...).
    Reject {
        by: RuleRef,
        with: String,
    },
    /// The outcome hangs on a condition kports cannot evaluate statically.
    Depends {
        on: String,
        at: RuleRef,
        if_true: Box<Judgement>,
        if_false: Box<Judgement>,
    },
    /// kports cannot tell: a ruleset it could not read, or an action it does not model.
    Unknown {
        reason: String,
    },
}

impl Judgement {
    /// `accept`, `drop`, `reject`, `depends`, `unknown`.
    pub fn word(&self) -> &'static str {
        match self {
            Judgement::Accept { .. } => "accept",
            Judgement::Drop { .. } => "drop",
            Judgement::Reject { .. } => "reject",
            Judgement::Depends { .. } => "depends",
            Judgement::Unknown { .. } => "unknown",
        }
    }

    /// Whether a new connection gets through (`None` when it depends or is unknown).
    pub fn is_open(&self) -> Option<bool> {
        match self {
            Judgement::Accept { .. } => Some(true),
            Judgement::Drop { .. } | Judgement::Reject { .. } => Some(false),
            Judgement::Depends { .. } | Judgement::Unknown { .. } => None,
        }
    }

    /// The rule that decided a drop or reject.
    pub fn blocker(&self) -> Option<&RuleRef> {
        match self {
            Judgement::Drop { by } | Judgement::Reject { by, .. } => Some(by),
            _ => None,
        }
    }

    /// One line for a table cell: the verdict and the rule that decided it.
    pub fn summary(&self) -> String {
        match self {
            Judgement::Accept { by } => {
                // The last accepting chain is the one a user looks at first; the others are
                // usually policies.
                let rules: Vec<&RuleRef> = by.iter().filter(|r| r.position.is_some()).collect();
                match (rules.last(), by.last()) {
                    (Some(r), _) => format!("accept by {r}"),
                    (None, Some(p)) => format!(
                        "accept ({} {} {} policy)",
                        p.backend.as_str(),
                        p.table,
                        p.chain
                    ),
                    (None, None) => "accept (no filter chain at the input hook)".to_string(),
                }
            }
            Judgement::Drop { by } => format!("drop by {by}"),
            Judgement::Reject { by, with } => format!("reject ({with}) by {by}"),
            Judgement::Depends {
                on,
                if_true,
                if_false,
                ..
            } => {
                format!(
                    "depends on `{on}`: {} if it holds, else {}",
                    if_true.word(),
                    if_false.word()
                )
            }
            Judgement::Unknown { reason } => format!("unknown: {reason}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    t: usize,
    c: usize,
    /// `None` for the chain's policy.
    r: Option<usize>,
}

/// A chain walk's outcome, a tree where conditions were undecidable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flow {
    Accept(Id),
    Drop(Id, Option<String>),
    /// Left the chain (fell off its end or `return`).
    Return,
    /// Go on with the next rule of the current chain (after a `jump` came back, or `continue`).
    Next,
    Unknown(String),
    Depends(String, Id, Box<Flow>, Box<Flow>),
}

impl Flow {
    fn has(&self, leaf: &Flow) -> bool {
        match self {
            Flow::Depends(_, _, y, n) => y.has(leaf) || n.has(leaf),
            f => f == leaf,
        }
    }

    /// (nodes, leaves equal to `leaf`).
    fn count(&self, leaf: &Flow) -> (u64, u64) {
        match self {
            Flow::Depends(_, _, y, n) => {
                let (a, b) = y.count(leaf);
                let (c, d) = n.count(leaf);
                (a + c + 1, b + d)
            }
            f => (1, u64::from(f == leaf)),
        }
    }

    /// Puts `with` in place of every leaf equal to `leaf`, in place: moved into the last such
    /// leaf and copied into the others, so the common case (one leaf) copies nothing.
    fn replace(mut self, leaf: &Flow, with: Flow) -> Flow {
        let mut spots = Vec::new();
        self.leaves_mut(leaf, &mut spots);
        if let Some((last, others)) = spots.split_last_mut() {
            for s in others {
                **s = with.clone();
            }
            **last = with;
        }
        self
    }

    fn leaves_mut<'a>(&'a mut self, leaf: &Flow, out: &mut Vec<&'a mut Flow>) {
        match self {
            Flow::Depends(_, _, y, n) => {
                y.leaves_mut(leaf, out);
                n.leaves_mut(leaf, out);
            }
            f => {
                if *f == *leaf {
                    out.push(f);
                }
            }
        }
    }
}

fn fork(why: String, id: Id, yes: Flow, no: Flow) -> Flow {
    if yes == no {
        yes
    } else {
        Flow::Depends(why, id, Box::new(yes), Box::new(no))
    }
}

/// A chain's outcome for one packet, kept for reuse.
#[derive(Debug, Clone, Default)]
struct Memo {
    /// The packet it belongs to ([`Evaluator::judge`] call).
    generation: u64,
    flow: Option<Flow>,
    /// How many jumps deep its walk went.
    height: usize,
    /// Nodes of the outcome tree.
    size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    Maybe(String),
}

/// What the packet holds for a key.
#[derive(Debug, Clone)]
enum PVal<'p> {
    Int(u64),
    Range(AddrRange),
    Str(&'p str),
    /// The destination is a node address, not known which, and not loopback.
    LocalNotLoopback,
    /// The input interface is unknown but is not `lo` (the source is not a loopback address).
    NotLo,
    Tuple(Vec<PVal<'p>>),
    /// The field is absent from this packet (a TCP port of a UDP packet): no match, negated or not.
    Absent,
    Unknown(String),
}

const MAX_DEPTH: usize = 64;
/// Chains with at least this many rules are indexed by destination port.
const INDEX_MIN: usize = 32;
/// A rule is keyed by its ports when it requires at most this many.
const INDEX_PORTS: u64 = 64;

/// Rules of a long chain keyed by the destination ports they require. A rule that requires
/// ports (a `dport` condition, not negated, of a few ports) cannot match a packet to another
/// port, or one without ports: its condition is false for it, whatever else the rule says.
#[derive(Debug, Default)]
struct PortIndex {
    /// Rules that require no particular port, ascending.
    always: Vec<usize>,
    /// For each port, the rules that require it, ascending.
    by_port: HashMap<u16, Vec<usize>>,
}

impl PortIndex {
    fn new(rules: &[Rule]) -> PortIndex {
        let mut ix = PortIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            match required_ports(rule) {
                Some(ranges) => {
                    for (a, b) in ranges {
                        for port in a..=b {
                            let v = ix.by_port.entry(port).or_default();
                            if v.last() != Some(&i) {
                                v.push(i);
                            }
                        }
                    }
                }
                None => ix.always.push(i),
            }
        }
        ix
    }

    /// The first rule at or after `from` that a packet to `port` may match.
    fn next(&self, from: usize, port: u16) -> Option<usize> {
        let first = |v: &[usize]| v.get(v.partition_point(|&x| x < from)).copied();
        let a = first(&self.always);
        let b = self.by_port.get(&port).and_then(|v| first(v));
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The destination ports a rule requires, as ranges, if it requires a few.
fn required_ports(rule: &Rule) -> Option<Vec<(u16, u16)>> {
    rule.conds.iter().find_map(|c| {
        let (Key::Port { dir: Dir::Dst, .. }, false, Rhs::Vals(vs)) = (&c.key, c.neg, &c.rhs)
        else {
            return None;
        };
        let mut out = Vec::with_capacity(vs.len());
        let mut n: u64 = 0;
        for v in vs {
            let Val::Int(a, b) = v else { return None };
            if *a > *b || *b > u64::from(u16::MAX) {
                return None;
            }
            n += b - a + 1;
            if n > INDEX_PORTS {
                return None;
            }
            out.push((*a as u16, *b as u16));
        }
        Some(out)
    })
}

/// Chain walks allowed for one packet beyond one per rule, chain and verdict map entry.
const WALK_SLACK: u64 = 10_000;
const MAX_FORKS: u32 = 256;
/// Bound on the outcomes combined across base chains for one packet.
const MAX_FOLD: u32 = 4096;
/// Bound on the nodes of outcome trees built for one packet.
const MAX_NODES: u64 = 50_000;

/// Judges packets against one ruleset. Building it sorts the base chains once.
#[derive(Debug)]
pub struct Evaluator<'r> {
    rs: &'r Ruleset,
    /// Filter base chains on the input path, in the order a packet meets them.
    bases: Vec<(usize, usize)>,
    forks: Cell<u32>,
    nodes: Cell<u64>,
    /// Chain walks for the current packet, reused ones included.
    walks: Cell<u64>,
    /// Rules looked at for the current packet.
    visits: Cell<u64>,
    /// Chain walks allowed for one packet (linear in the ruleset's size).
    walk_budget: u64,
    /// Index of each table's first chain in `memo` and `index`.
    chain_base: Vec<usize>,
    /// Port index of each long chain.
    index: Vec<Option<PortIndex>>,
    /// The packet being judged: `memo` entries of other generations are stale.
    generation: Cell<u64>,
    /// Outcome of walking each chain from its first rule, for the current packet.
    memo: RefCell<Vec<Memo>>,
    /// Set when a walk was cut short by [`MAX_DEPTH`]: its outcome depends on where it started.
    cut: Cell<bool>,
    /// The deepest walk started since the current chain walk began.
    reach: Cell<usize>,
    /// Sorted, distinct integers where a stretch of equal verdicts may begin (`a` and `b + 1`
    /// of every integer range in the tables that are walked).
    cuts: Vec<u64>,
}

impl<'r> Evaluator<'r> {
    pub fn new(rs: &'r Ruleset) -> Evaluator<'r> {
        let mut bases: Vec<(Hook, i32, Backend, usize, usize)> = Vec::new();
        for (t, table) in rs.tables.iter().enumerate() {
            for (c, chain) in table.chains.iter().enumerate() {
                if let Some(b) = &chain.base
                    && b.kind == ChainType::Filter
                {
                    bases.push((b.hook, b.priority, table.backend, t, c));
                }
            }
        }
        // Chains of equal priority run in registration order, which no listing shows; the
        // verdict does not depend on it (drops are final, accepts are not).
        bases.sort_by_key(|&(h, p, b, t, c)| (h, p, b, t, c));
        let walked: Vec<usize> = {
            let mut v: Vec<usize> = bases.iter().map(|b| b.3).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut cuts = Vec::new();
        for &t in &walked {
            for_each_int(&rs.tables[t], &mut |a, b| {
                cuts.push(a);
                cuts.push(b.saturating_add(1));
            });
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut chain_base = Vec::with_capacity(rs.tables.len());
        let mut size: u64 = 0;
        let mut chains = 0usize;
        for table in &rs.tables {
            chain_base.push(chains);
            chains += table.chains.len();
            size += table.chains.len() as u64;
            for chain in &table.chains {
                for rule in &chain.rules {
                    size += 1;
                    if let Action::Vmap {
                        map: VmapRef::Inline(es),
                        ..
                    } = &rule.action
                    {
                        size += es.len() as u64;
                    }
                }
            }
            size += table.sets.iter().map(|s| s.elems.len() as u64).sum::<u64>();
        }
        Evaluator {
            cuts,
            rs,
            bases: bases.into_iter().map(|(_, _, _, t, c)| (t, c)).collect(),
            forks: Cell::new(0),
            nodes: Cell::new(0),
            walks: Cell::new(0),
            visits: Cell::new(0),
            walk_budget: WALK_SLACK.saturating_add(size.saturating_mul(2)),
            chain_base,
            generation: Cell::new(0),
            memo: RefCell::new(vec![Memo::default(); chains]),
            index: rs
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| (c.rules.len() >= INDEX_MIN).then(|| PortIndex::new(&c.rules)))
                .collect(),
            cut: Cell::new(false),
            reach: Cell::new(0),
        }
    }

    /// The work the last [`Evaluator::judge`] did: chain walks (reused ones included) plus
    /// rules looked at. It grows with the ruleset's size, whatever its shape.
    pub fn work(&self) -> u64 {
        self.walks.get() + self.visits.get()
    }

    /// The verdict for one packet.
    pub fn judge(&self, p: &Packet) -> Judgement {
        self.forks.set(0);
        self.nodes.set(0);
        self.walks.set(0);
        self.visits.set(0);
        self.generation.set(self.generation.get() + 1);
        let flows: Vec<Flow> = self
            .bases
            .iter()
            .filter(|&&(t, _)| self.rs.tables[t].family.sees(p.v6))
            .map(|&(t, c)| self.base_flow(t, c, p))
            .collect();
        if self.walks.get() > self.walk_budget {
            return Judgement::Unknown {
                reason: format!(
                    "ruleset too complex to judge ({} chain walks)",
                    self.walks.get()
                ),
            };
        }
        let mut nodes = 0u32;
        let j = self.fold_all(&flows, 0, Vec::new(), &mut nodes);
        if self.rs.unread.is_empty() || j.blocker().is_some() {
            return j;
        }
        let unread: Vec<&str> = self.rs.unread.iter().map(|u| u.source.as_str()).collect();
        let unread = unread.join(", ");
        // The reasons are in the warnings; what the readable rules say comes after, as what it
        // is: not the verdict.
        let reason = if self.rs.tables.is_empty() {
            format!("no ruleset could be read ({unread}: see the warnings)")
        } else {
            format!(
                "{unread} could not be read (see the warnings); the rules that could: {}",
                j.summary()
            )
        };
        Judgement::Unknown { reason }
    }

    /// Verdicts for every port of `lo..=hi`, as maximal runs of ports with the same verdict.
    /// Ports are grouped by the port numbers the ruleset mentions, so a range of thousands of
    /// ports costs one walk per distinct stretch, not one per port.
    pub fn judge_ports(&self, p: &Packet, lo: u16, hi: u16) -> Vec<(u16, u16, Judgement)> {
        // Stretch boundaries: `lo`, and every boundary the walked tables mention inside the range.
        let first = self.cuts.partition_point(|&x| x <= u64::from(lo));
        let mut cuts = vec![u32::from(lo)];
        cuts.extend(
            self.cuts[first..]
                .iter()
                .take_while(|&&x| x <= u64::from(hi))
                .map(|&x| x as u32),
        );
        let mut out: Vec<(u16, u16, Judgement)> = Vec::new();
        for (n, &start) in cuts.iter().enumerate() {
            let end = cuts.get(n + 1).map_or(u32::from(hi), |&x| x - 1);
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                continue;
            };
            let j = self.judge(&Packet {
                dport: start,
                ..p.clone()
            });
            match out.last_mut() {
                Some(last) if last.2 == j && u32::from(last.1) + 1 == u32::from(start) => {
                    last.1 = end
                }
                _ => out.push((start, end, j)),
            }
        }
        out
    }

    fn base_flow(&self, t: usize, c: usize, p: &Packet) -> Flow {
        let Some(base) = &self.rs.tables[t].chains[c].base else {
            return Flow::Return;
        };
        let id = Id { t, c, r: None };
        let policy = match base.policy {
            Policy::Accept => Flow::Accept(id),
            Policy::Drop => Flow::Drop(id, None),
        };
        let f = self.walk_chain(t, c, 0, p);
        f.replace(&Flow::Return, policy.clone())
            .replace(&Flow::Next, policy)
    }

    fn fold_all(&self, flows: &[Flow], i: usize, acc: Vec<Id>, nodes: &mut u32) -> Judgement {
        match flows.get(i) {
            None => Judgement::Accept {
                by: acc.iter().map(|&id| self.rule_ref(id)).collect(),
            },
            Some(f) => self.fold(f, flows, i, acc, nodes),
        }
    }

    fn fold(
        &self,
        f: &Flow,
        flows: &[Flow],
        i: usize,
        mut acc: Vec<Id>,
        nodes: &mut u32,
    ) -> Judgement {
        *nodes += 1;
        if *nodes > MAX_FOLD {
            return Judgement::Unknown {
                reason: "too many undecidable conditions on the way".into(),
            };
        }
        match f {
            Flow::Accept(id) => {
                acc.push(*id);
                self.fold_all(flows, i + 1, acc, nodes)
            }
            Flow::Drop(id, None) => Judgement::Drop {
                by: self.rule_ref(*id),
            },
            Flow::Drop(id, Some(w)) => Judgement::Reject {
                by: self.rule_ref(*id),
                with: w.clone(),
            },
            Flow::Unknown(r) => Judgement::Unknown { reason: r.clone() },
            // Policies replaced these already; an accept is the harmless reading.
            Flow::Return | Flow::Next => self.fold_all(flows, i + 1, acc, nodes),
            Flow::Depends(on, id, y, n) => {
                let yes = self.fold(y, flows, i, acc.clone(), nodes);
                let no = self.fold(n, flows, i, acc, nodes);
                if yes.word() == no.word() {
                    // Same outcome either way: the path that does not rely on the condition names it.
                    no
                } else {
                    Judgement::Depends {
                        on: on.clone(),
                        at: self.rule_ref(*id),
                        if_true: Box::new(yes),
                        if_false: Box::new(no),
                    }
                }
            }
        }
    }

    fn rule_ref(&self, id: Id) -> RuleRef {
        let table = &self.rs.tables[id.t];
        let chain = &table.chains[id.c];
        match id.r {
            Some(r) => {
                let rule = &chain.rules[r];
                RuleRef {
                    backend: table.backend,
                    table: table.label(),
                    chain: chain.name.clone(),
                    position: Some(r + 1),
                    handle: rule.handle,
                    text: rule.text.clone(),
                }
            }
            None => RuleRef {
                backend: table.backend,
                table: table.label(),
                chain: chain.name.clone(),
                position: None,
                handle: None,
                text: match chain.base.as_ref().map(|b| b.policy) {
                    Some(Policy::Drop) => "policy drop".into(),
                    _ => "policy accept".into(),
                },
            },
        }
    }

    /// Accounts for copying `rest` into every `Next` leaf of `outcome`; false past the bound.
    fn grow(&self, outcome: &Flow, rest: &Flow) -> bool {
        let (_, leaves) = outcome.count(&Flow::Next);
        let (size, _) = rest.count(&Flow::Next);
        let n = self.nodes.get().saturating_add(leaves.saturating_mul(size));
        self.nodes.set(n);
        n <= MAX_NODES
    }

    fn spend(&self) -> bool {
        let n = self.forks.get() + 1;
        self.forks.set(n);
        n <= MAX_FORKS
    }

    /// Walks chain `c` of table `t` from its first rule, or reuses the outcome of an earlier
    /// walk of it for this packet. Every call counts against the walk budget.
    fn walk_chain(&self, t: usize, c: usize, depth: usize, p: &Packet) -> Flow {
        let walks = self.walks.get() + 1;
        self.walks.set(walks);
        if walks > self.walk_budget {
            return Flow::Unknown(format!(
                "ruleset too complex to judge ({walks} chain walks)"
            ));
        }
        let k = self.chain_base[t] + c;
        let generation = self.generation.get();
        {
            let memo = self.memo.borrow();
            let m = &memo[k];
            // An outcome is reused only where its deepest walk stays within the depth bound,
            // so reusing it gives exactly what walking again would.
            if m.generation == generation
                && let Some(f) = &m.flow
                && depth + m.height <= MAX_DEPTH
            {
                self.reach.set(self.reach.get().max(depth + m.height));
                // Copying an outcome tree is work too: it counts as building one would.
                if m.size > 1 {
                    let n = self.nodes.get().saturating_add(m.size);
                    self.nodes.set(n);
                    if n > MAX_NODES {
                        return Flow::Unknown("too many undecidable conditions on the way".into());
                    }
                }
                return f.clone();
            }
        }
        let (outer_cut, outer_reach) = (self.cut.replace(false), self.reach.replace(depth));
        let f = self.walk(t, c, 0, depth, p);
        let (cut, reach) = (self.cut.get(), self.reach.get());
        if !cut {
            self.memo.borrow_mut()[k] = Memo {
                generation,
                size: f.count(&Flow::Next).0,
                flow: Some(f.clone()),
                height: reach - depth,
            };
        }
        self.cut.set(outer_cut || cut);
        self.reach.set(outer_reach.max(reach));
        f
    }

    /// Walks chain `c` of table `t` from rule `from`. Leaves: verdicts, or `Return`.
    fn walk(&self, t: usize, c: usize, from: usize, depth: usize, p: &Packet) -> Flow {
        let table = &self.rs.tables[t];
        let rules = &table.chains[c].rules;
        let index = self.index[self.chain_base[t] + c].as_ref();
        let mut i = from;
        while i < rules.len() {
            if let Some(ix) = index {
                match ix.next(i, p.dport) {
                    Some(next) => i = next,
                    None => break,
                }
            }
            if self.walks.get() > self.walk_budget {
                return Flow::Unknown(format!(
                    "ruleset too complex to judge ({} chain walks)",
                    self.walks.get()
                ));
            }
            self.visits.set(self.visits.get() + 1);
            let rule = &rules[i];
            let id = Id { t, c, r: Some(i) };
            let why = match self.rule_truth(table, rule, p) {
                Truth::No => {
                    i += 1;
                    continue;
                }
                Truth::Yes => None,
                Truth::Maybe(w) => Some(w),
            };
            let outcome = self.act(t, c, id, &rule.action, depth, p);
            if outcome == Flow::Next {
                i += 1;
                continue;
            }
            let Some(why) = why else {
                if !outcome.has(&Flow::Next) {
                    return outcome;
                }
                let rest = self.walk(t, c, i + 1, depth, p);
                if !self.grow(&outcome, &rest) {
                    return Flow::Unknown("too many undecidable conditions on the way".into());
                }
                return outcome.replace(&Flow::Next, rest);
            };
            if !self.spend() {
                return Flow::Unknown(format!("too many undecidable conditions (last: {why})"));
            }
            let rest = self.walk(t, c, i + 1, depth, p);
            if !self.grow(&outcome, &rest) {
                return Flow::Unknown(format!("too many undecidable conditions (last: {why})"));
            }
            let yes = if outcome.has(&Flow::Next) {
                outcome.replace(&Flow::Next, rest.clone())
            } else {
                outcome
            };
            return fork(why, id, yes, rest);
        }
        Flow::Return
    }

    /// What an action does; `Next` leaves mean "go on with the next rule".
    fn act(&self, t: usize, c: usize, id: Id, action: &Action, depth: usize, p: &Packet) -> Flow {
        let table = &self.rs.tables[t];
        match action {
            Action::Continue => Flow::Next,
            Action::Accept => Flow::Accept(id),
            Action::Drop => Flow::Drop(id, None),
            Action::Reject(w) => {
                Flow::Drop(id, Some(w.clone().unwrap_or_else(|| default_reject(p))))
            }
            Action::Return => Flow::Return,
            Action::Unknown(what) => Flow::Unknown(format!(
                "{what} in {} {}",
                table.label(),
                table.chains[c].name
            )),
            Action::Jump(name) | Action::Goto(name) => {
                let Some(target) = table.chain_id(name) else {
                    return Flow::Unknown(format!(
                        "jump to chain {name}, which {} does not have",
                        table.label()
                    ));
                };
                if depth >= MAX_DEPTH {
                    self.cut.set(true);
                    return Flow::Unknown(format!(
                        "jumps nest deeper than {MAX_DEPTH} at chain {name}"
                    ));
                }
                let sub = self.walk_chain(t, target, depth + 1, p);
                if matches!(action, Action::Jump(_)) {
                    sub.replace(&Flow::Return, Flow::Next)
                } else {
                    sub
                }
            }
            Action::Vmap { key, map } => {
                let entries: Vec<(&Val, &Action)> = match map {
                    VmapRef::Inline(v) => v.iter().map(|(k, a)| (k, a)).collect(),
                    VmapRef::Named(n) => match table.set(n) {
                        Some(s) => match &s.verdicts {
                            Some(vs) => s.elems.iter().zip(vs.iter()).collect(),
                            None => return Flow::Unknown(format!("map @{n} holds no verdicts")),
                        },
                        None => {
                            return Flow::Unknown(format!(
                                "map @{n} not found in {}",
                                table.label()
                            ));
                        }
                    },
                };
                let pv = self.value(key, p);
                self.vmap(t, c, id, key, &pv, &entries, depth, p)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn vmap(
        &self,
        t: usize,
        c: usize,
        id: Id,
        key: &Key,
        pv: &PVal<'_>,
        entries: &[(&Val, &Action)],
        depth: usize,
        p: &Packet,
    ) -> Flow {
        for (n, (val, action)) in entries.iter().enumerate() {
            match match_val(pv, val) {
                Truth::No => continue,
                Truth::Yes => return self.act(t, c, id, action, depth, p),
                Truth::Maybe(_) => {
                    if !self.spend() {
                        return Flow::Unknown(
                            "too many undecidable conditions in a verdict map".into(),
                        );
                    }
                    let yes = self.act(t, c, id, action, depth, p);
                    let no = self.vmap(t, c, id, key, pv, &entries[n + 1..], depth, p);
                    return fork(format!("{key} {}", show_val(val)), id, yes, no);
                }
            }
        }
        Flow::Next
    }

    fn rule_truth(&self, table: &Table, rule: &Rule, p: &Packet) -> Truth {
        let mut maybe: Option<String> = None;
        for cond in &rule.conds {
            match self.cond_truth(table, cond, p) {
                Truth::No => return Truth::No,
                Truth::Yes => {}
                Truth::Maybe(w) => {
                    maybe.get_or_insert(w);
                }
            }
        }
        maybe.map_or(Truth::Yes, Truth::Maybe)
    }

    fn cond_truth(&self, table: &Table, cond: &Cond, p: &Packet) -> Truth {
        let pv = self.value(&cond.key, p);
        match &pv {
            PVal::Absent => return Truth::No,
            PVal::Unknown(_) => return Truth::Maybe(show_cond(cond)),
            _ => {}
        }
        let vals: &[Val] = match &cond.rhs {
            Rhs::Vals(v) => v,
            Rhs::Set(name) => match table.set(name) {
                Some(s) => &s.elems,
                None => return Truth::Maybe(format!("{} (set not found)", show_cond(cond))),
            },
        };
        let mut partial = false;
        let mut t = Truth::No;
        for v in vals {
            match match_val(&pv, v) {
                Truth::Yes => {
                    t = Truth::Yes;
                    break;
                }
                Truth::Maybe(_) => partial = true,
                Truth::No => {}
            }
        }
        if t == Truth::No && partial {
            return Truth::Maybe(show_cond(cond));
        }
        match (t, cond.neg) {
            (Truth::Yes, false) | (Truth::No, true) => Truth::Yes,
            _ => Truth::No,
        }
    }

    fn value<'p>(&self, key: &Key, p: &'p Packet) -> PVal<'p> {
        match key {
            Key::L4Proto => PVal::Int(u64::from(p.proto)),
            Key::Port { dir, proto } => {
                let has_ports = matches!(p.proto, 6 | 17 | 132 | 136);
                if proto.is_some_and(|x| x != p.proto) || !has_ports {
                    return PVal::Absent;
                }
                match dir {
                    Dir::Dst => PVal::Int(u64::from(p.dport)),
                    Dir::Src => PVal::Unknown("source port".into()),
                }
            }
            Key::Addr { dir, v6 } => {
                if v6.is_some_and(|v| v != p.v6) {
                    return PVal::Absent;
                }
                match (dir, p.dst) {
                    (Dir::Src, _) => PVal::Range(p.src),
                    (Dir::Dst, Some(a)) => PVal::Range(AddrRange::single(a)),
                    (Dir::Dst, None) => PVal::LocalNotLoopback,
                }
            }
            Key::Iifname => match &p.iif {
                Some(n) => PVal::Str(n),
                None if p.src.is_loopback() => PVal::Str("lo"),
                None => PVal::NotLo,
            },
            Key::Oifname => PVal::Absent,
            Key::NfProto => PVal::Str(if p.v6 { "ipv6" } else { "ipv4" }),
            Key::CtState => PVal::Str("new"),
            Key::CtStatus => PVal::Str(""),
            Key::CtDirection => PVal::Str("original"),
            Key::PktType => PVal::Str("host"),
            Key::TcpSyn => {
                if p.proto == 6 {
                    PVal::Str("syn")
                } else {
                    PVal::Absent
                }
            }
            Key::AddrType { dir: Dir::Dst } => PVal::Str("LOCAL"),
            Key::AddrType { dir: Dir::Src } => PVal::Unknown("source address type".into()),
            Key::Concat(keys) => {
                let vs: Vec<PVal<'p>> = keys.iter().map(|k| self.value(k, p)).collect();
                if vs.iter().any(|v| matches!(v, PVal::Absent)) {
                    return PVal::Absent;
                }
                if let Some(PVal::Unknown(w)) = vs.iter().find(|v| matches!(v, PVal::Unknown(_))) {
                    return PVal::Unknown(w.clone());
                }
                PVal::Tuple(vs)
            }
            Key::Unknown(w) => PVal::Unknown(w.clone()),
        }
    }
}

fn default_reject(p: &Packet) -> String {
    if p.v6 {
        "icmpv6 port-unreachable".into()
    } else {
        "icmp port-unreachable".into()
    }
}

fn match_val(pv: &PVal<'_>, v: &Val) -> Truth {
    let b = |x: bool| if x { Truth::Yes } else { Truth::No };
    match (pv, v) {
        (PVal::Int(x), Val::Int(a, z)) => b(a <= x && x <= z),
        (PVal::Range(r), Val::Addr(a)) => {
            if a.contains(r) {
                Truth::Yes
            } else if a.overlaps(r) {
                Truth::Maybe(String::new())
            } else {
                Truth::No
            }
        }
        (PVal::LocalNotLoopback, Val::Addr(a)) => {
            if a.is_loopback() {
                Truth::No
            } else {
                Truth::Maybe(String::new())
            }
        }
        (PVal::Str(s), Val::Str(w)) => match w.strip_suffix('*') {
            Some(prefix) => b(s.starts_with(prefix)),
            None => b(s == w),
        },
        (PVal::NotLo, Val::Str(w)) => {
            if w == "lo" {
                Truth::No
            } else {
                Truth::Maybe(String::new())
            }
        }
        (PVal::Tuple(ps), Val::Concat(vs)) => {
            if ps.len() != vs.len() {
                return Truth::No;
            }
            let mut t = Truth::Yes;
            for (p, v) in ps.iter().zip(vs) {
                match match_val(p, v) {
                    Truth::No => return Truth::No,
                    Truth::Maybe(w) => t = Truth::Maybe(w),
                    Truth::Yes => {}
                }
            }
            t
        }
        (PVal::Absent, _) => Truth::No,
        // A value of another type than the field (a name kports did not translate): undecided.
        _ => Truth::Maybe(String::new()),
    }
}

/// Calls `f` with every integer range of a table (ports among them).
fn for_each_int(t: &Table, f: &mut dyn FnMut(u64, u64)) {
    fn val(v: &Val, f: &mut dyn FnMut(u64, u64)) {
        match v {
            Val::Int(a, b) => f(*a, *b),
            Val::Concat(vs) => vs.iter().for_each(|v| val(v, f)),
            _ => {}
        }
    }
    for s in &t.sets {
        s.elems.iter().for_each(|v| val(v, f));
    }
    for c in &t.chains {
        for r in &c.rules {
            for cond in &r.conds {
                if let Rhs::Vals(vs) = &cond.rhs {
                    vs.iter().for_each(|v| val(v, f));
                }
            }
            if let Action::Vmap {
                map: VmapRef::Inline(es),
                ..
            } = &r.action
            {
                es.iter().for_each(|(v, _)| val(v, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn port_cond() -> impl Strategy<Value = Cond> {
        (
            any::<bool>(),
            prop::option::of(prop_oneof![Just(6u8), Just(17u8)]),
            prop::collection::vec((20u64..40, 0u64..3), 1..3),
            any::<bool>(),
        )
            .prop_map(|(neg, proto, vs, wide)| Cond {
                key: Key::Port {
                    dir: Dir::Dst,
                    proto,
                },
                neg,
                rhs: Rhs::Vals(if wide {
                    vec![Val::Int(0, 1000)]
                } else {
                    vs.into_iter().map(|(a, w)| Val::Int(a, a + w)).collect()
                }),
            })
    }

    fn rule() -> impl Strategy<Value = Rule> {
        let other = prop_oneof![
            Just(Cond {
                key: Key::Unknown("meta mark 0x1".into()),
                neg: false,
                rhs: Rhs::Vals(Vec::new()),
            }),
            Just(Cond {
                key: Key::Addr {
                    dir: Dir::Src,
                    v6: Some(false),
                },
                neg: false,
                rhs: Rhs::Vals(vec![Val::Addr(parse_cidr("10.0.0.0/8").unwrap())]),
            }),
        ];
        let action = prop_oneof![
            Just(Action::Accept),
            Just(Action::Drop),
            Just(Action::Continue),
            Just(Action::Return),
            Just(Action::Jump("side".into())),
        ];
        (
            prop::collection::vec(port_cond(), 0..3),
            prop::collection::vec(other, 0..2),
            action,
        )
            .prop_map(|(mut conds, other, action)| {
                conds.extend(other);
                Rule {
                    handle: None,
                    text: String::new(),
                    conds,
                    action,
                }
            })
    }

    fn ruleset() -> impl Strategy<Value = Ruleset> {
        (
            prop::collection::vec(rule(), INDEX_MIN..INDEX_MIN * 3),
            prop::collection::vec(rule(), 0..INDEX_MIN * 2),
        )
            .prop_map(|(input, side)| {
                let side: Vec<Rule> = side
                    .into_iter()
                    .filter(|r| r.action != Action::Jump("side".into()))
                    .collect();
                let mut t = Table::new(Backend::Nft, TableFamily::Inet, "t");
                let c = t.chain_mut("input");
                c.rules = input;
                c.base = Some(BaseChain {
                    hook: Hook::Input,
                    priority: 0,
                    kind: ChainType::Filter,
                    policy: Policy::Drop,
                });
                t.chain_mut("side").rules = side;
                Ruleset {
                    tables: vec![t],
                    unread: Vec::new(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        /// The port index changes how many rules are looked at, never the answer.
        #[test]
        fn port_index_gives_the_same_verdicts(
            rs in ruleset(),
            port in 15u16..45,
            udp in any::<bool>(),
            icmp in any::<bool>(),
            src in prop_oneof![Just("10.1.2.3"), Just("192.0.2.1"), Just("0.0.0.0/0")],
        ) {
            let indexed = Evaluator::new(&rs);
            prop_assert!(indexed.index.iter().any(Option::is_some));
            let mut plain = Evaluator::new(&rs);
            plain.index = plain.index.iter().map(|_| None).collect();
            let p = Packet {
                v6: false,
                proto: if icmp { 1 } else if udp { 17 } else { 6 },
                dport: port,
                src: parse_cidr(src).unwrap(),
                dst: None,
                iif: None,
            };
            prop_assert_eq!(indexed.judge(&p), plain.judge(&p));
            prop_assert!(indexed.work() <= plain.work());
            prop_assert_eq!(indexed.judge_ports(&p, 10, 50), plain.judge_ports(&p, 10, 50));
        }
    }

    #[test]
    fn a_long_chain_of_port_rules_is_looked_at_by_port() {
        let mut t = Table::new(Backend::Nft, TableFamily::Inet, "t");
        let c = t.chain_mut("input");
        c.base = Some(BaseChain {
            hook: Hook::Input,
            priority: 0,
            kind: ChainType::Filter,
            policy: Policy::Accept,
        });
        c.rules = (0..1000u64)
            .map(|i| Rule {
                handle: None,
                text: String::new(),
                conds: vec![Cond {
                    key: Key::Port {
                        dir: Dir::Dst,
                        proto: Some(6),
                    },
                    neg: false,
                    rhs: Rhs::Vals(vec![Val::Int(20000 + i, 20000 + i)]),
                }],
                action: Action::Drop,
            })
            .collect();
        let rs = Ruleset {
            tables: vec![t],
            unread: Vec::new(),
        };
        let ev = Evaluator::new(&rs);
        let p = Packet {
            v6: false,
            proto: 6,
            dport: 20500,
            src: parse_cidr("192.0.2.1").unwrap(),
            dst: None,
            iif: None,
        };
        match ev.judge(&p) {
            Judgement::Drop { by } => assert_eq!(by.position, Some(501)),
            j => panic!("{j:?}"),
        }
        // One base chain walk and one rule.
        assert_eq!(ev.work(), 2);
        // Every port its own rule: one stretch each, each judged by looking at one rule.
        let segs = ev.judge_ports(&p, 20000, 20999);
        assert_eq!(segs.len(), 1000);
        assert!(segs.iter().all(|s| s.2.word() == "drop"));
        assert_eq!(ev.work(), 2);
    }
}
