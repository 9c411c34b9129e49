//! `kports-probe-bench`: the probe benchmark. It builds two network namespaces joined by a veth
//! pair (the prober's, with 192.0.2.1, and the targets', with 100 addresses 192.0.2.101-200),
//! serves 33 TCP ports there, leaves 33 closed and drops 34 with nft: 10,000 (address, port)
//! targets, a third of them dropped. Then it times, interleaved, `kports probe` on all of them,
//! `kports probe` on the open and refused ones only, `kports probe` under an open-file limit of
//! 1024, and `nmap -sT -T4` on all of them; checks every status of both tools against the
//! setup, and prints a markdown report. Nothing outside the two namespaces is probed.
//!
//! Exit status: 0 when every check held, 1 when one did not, 2 on an error.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use kports_bench::measure::{self, Argv, Run, Stdout};
use kports_bench::stats::{median, secs};

/// Times `kports probe` and `nmap -sT -T4` on 10,000 targets in namespaces it creates.
#[derive(Debug, Parser)]
#[command(name = "kports-probe-bench", version, max_term_width = 100)]
struct Args {
    /// Measured rounds (each runs every command once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    runs: u16,
    /// kports's per-probe timeout, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// The kports binary [default: `kports` next to this program].
    #[arg(long, value_name = "PATH")]
    kports: Option<PathBuf>,
}

const HOSTS: u8 = 100;
const FIRST_PORT: u16 = 40000;
/// 40000-40032 listen, 40033-40065 refuse, 40066-40099 drop.
const OPEN: u16 = 33;
const REFUSED: u16 = 33;
const PORTS: u16 = 100;

fn expected(port: u16) -> &'static str {
    match port - FIRST_PORT {
        p if p < OPEN => "open",
        p if p < OPEN + REFUSED => "closed",
        _ => "filtered",
    }
}

struct Namespaces {
    client: String,
    server: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn setup() -> Result<Namespaces> {
    let id = std::process::id();
    let ns = Namespaces {
        client: format!("kpb11c-{id}"),
        server: format!("kpb11s-{id}"),
    };
    sh("ip", &["netns", "add", &ns.client])?;
    sh("ip", &["netns", "add", &ns.server])?;
    let (c, s) = (ns.client.as_str(), ns.server.as_str());
    sh(
        "ip",
        &[
            "-n", c, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", s,
        ],
    )?;
    sh("ip", &["-n", c, "addr", "add", "192.0.2.1/24", "dev", "va"])?;
    let mut batch = String::new();
    for h in 0..HOSTS {
        batch.push_str(&format!(
            "addr add 192.0.2.{}/24 dev vb\n",
            101 + u16::from(h)
        ));
    }
    batch.push_str("link set vb up\nlink set lo up\n");
    let mut child = Command::new("ip")
        .args(["-n", s, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("ip -batch stdin")?
            .write_all(batch.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("ip -batch failed");
    }
    sh("ip", &["-n", c, "link", "set", "va", "up"])?;
    sh("ip", &["-n", c, "link", "set", "lo", "up"])?;
    let first_drop = FIRST_PORT + OPEN + REFUSED;
    let last = FIRST_PORT + PORTS - 1;
    let rule = format!(
        "add table inet kpb11\nadd chain inet kpb11 input {{ type filter hook input priority 0; }}\nadd rule inet kpb11 input tcp dport {first_drop}-{last} drop\n"
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", s, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write as _;
        nft.stdin
            .take()
            .context("nft stdin")?
            .write_all(rule.as_bytes())?;
    }
    if !nft.wait()?.success() {
        bail!("nft -f failed");
    }
    Ok(ns)
}

/// Binds the open ports inside the server namespace (from a thread that entered it) and
/// accepts on them for the rest of the run, so that accept queues never fill.
fn serve(server: &str) -> Result<()> {
    let path = format!("/run/netns/{server}");
    let listeners = std::thread::spawn(move || -> Result<Vec<TcpListener>> {
        let f = File::open(&path)?;
        // SAFETY: setns on a valid namespace fd; it changes only this thread, which ends here.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        (0..OPEN)
            .map(|i| {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, FIRST_PORT + i))?;
                // SAFETY: a valid listening socket; listen again only raises its backlog.
                if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
                Ok(l)
            })
            .collect()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))??;
    for l in listeners {
        std::thread::spawn(move || {
            for c in l.incoming() {
                drop(c);
            }
        });
    }
    Ok(())
}

/// What a tool said of each (address, port), in nmap's words.
type Statuses = BTreeMap<(Ipv4Addr, u16), String>;

/// One measured command and what it must report.
struct Tool {
    label: &'static str,
    argv: Argv,
    /// The exit statuses of a successful run.
    ok_codes: &'static [i32],
    parse: fn(&[u8]) -> Result<Statuses>,
    /// Ports it probes.
    ports: u16,
    runs: Vec<Run>,
    mismatches: usize,
}

fn parse_kports(out: &[u8]) -> Result<Statuses> {
    let doc: serde_json::Value = serde_json::from_slice(out).context("kports JSON")?;
    let mut m = BTreeMap::new();
    for r in doc["items"].as_array().context("items")? {
        let addr: Ipv4Addr = r["target_address"].as_str().context("addr")?.parse()?;
        let port = u16::try_from(r["port"].as_u64().context("port")?)?;
        let status = match r["status"].as_str().context("status")? {
            "refused" => "closed",
            "unreachable" => "filtered",
            s => s,
        };
        m.insert((addr, port), status.to_string());
    }
    Ok(m)
}

/// nmap's XML output (`-oX -`): listed `<port>`s, and the ports folded into `<extraports>`
/// (grepable output names only one folded state, and none when two states are folded).
fn parse_nmap(out: &[u8]) -> Result<Statuses> {
    let text = String::from_utf8_lossy(out);
    let mut m = BTreeMap::new();
    for host in text.split("<host ").skip(1) {
        let addr: Ipv4Addr = attr(host, "<address ", "addr")
            .context("a host without an address")?
            .parse()?;
        for port in host.split("<port ").skip(1) {
            let n: u16 = attr(port, "", "portid").context("portid")?.parse()?;
            let state = attr(port, "<state ", "state").context("state")?;
            m.insert((addr, n), state.to_string());
        }
        for extra in host.split("<extraports ").skip(1) {
            let state = attr(extra, "", "state").context("extraports state")?;
            for reasons in extra.split("<extrareasons ").skip(1) {
                for range in attr(reasons, "", "ports").context("ports")?.split(',') {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    for n in a.parse::<u16>()?..=b.parse::<u16>()? {
                        m.insert((addr, n), state.to_string());
                    }
                }
                if reasons.contains("</extraports>") {
                    break;
                }
            }
        }
    }
    Ok(m)
}

/// The value of `name="..."` in the first element after `tag` in `s`.
fn attr<'a>(s: &'a str, tag: &str, name: &str) -> Option<&'a str> {
    let at = s.find(tag)? + tag.len();
    let el = &s[at..at + s[at..].find('>')?];
    let key = format!("{name}=\"");
    let v = &el[el.find(&key)? + key.len()..];
    v.get(..v.find('"')?)
}

fn check(tool: &Tool, out: &[u8]) -> Result<usize> {
    let got = (tool.parse)(out)?;
    let mut bad = 0;
    for h in 0..HOSTS {
        let addr = Ipv4Addr::new(192, 0, 2, 101 + h);
        for p in FIRST_PORT..FIRST_PORT + tool.ports {
            let g = got.get(&(addr, p)).map_or("missing", String::as_str);
            if g != expected(p) {
                if bad < 3 {
                    eprintln!("{}: {addr} tcp/{p}: {g}, not {}", tool.label, expected(p));
                }
                bad += 1;
            }
        }
    }
    Ok(bad)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kports-probe-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root: it creates network namespaces");
    }
    let kports = match args.kports {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("kports"),
    };
    let nmap = measure::which("nmap").context("nmap is not installed (apt-get install nmap)")?;
    let ip = measure::which("ip").context("ip is not installed")?;
    let prlimit = measure::which("prlimit").context("prlimit (util-linux) is not installed")?;
    let ns = setup()?;
    serve(&ns.server)?;
    let timeout = format!("{}ms", args.timeout_ms);
    let all_ports = format!("{FIRST_PORT}-{}", FIRST_PORT + PORTS - 1);
    let live_ports = format!("{FIRST_PORT}-{}", FIRST_PORT + OPEN + REFUSED - 1);
    let hosts = "192.0.2.101-200";
    let cidr_args = |ports: &str| -> Vec<String> {
        let mut v = vec![
            "netns".to_string(),
            "exec".into(),
            ns.client.clone(),
            kports.display().to_string(),
            "probe".into(),
        ];
        for h in 0..HOSTS {
            v.push(format!("192.0.2.{}", 101 + u16::from(h)));
        }
        v.extend(["--ports".into(), format!("tcp/{ports}")]);
        v.extend([
            "--timeout".into(),
            timeout.clone(),
            "-o".into(),
            "json".into(),
        ]);
        v
    };
    let argv = |program: &PathBuf, v: Vec<String>| Argv {
        program: program.clone(),
        args: v.into_iter().map(Into::into).collect(),
    };
    let all = cidr_args(&all_ports);
    let live = cidr_args(&live_ports);
    let mut limited = vec![
        "netns".to_string(),
        "exec".into(),
        ns.client.clone(),
        prlimit.display().to_string(),
        "--nofile=1024:1024".into(),
    ];
    limited.extend(all.iter().skip(3).cloned());
    let nmap_args: Vec<String> = [
        "netns",
        "exec",
        &ns.client,
        &nmap.display().to_string(),
        "-sT",
        "-T4",
        "-Pn",
        "-n",
        "-p",
        &all_ports,
        "-oX",
        "-",
        hosts,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut tools = vec![
        Tool {
            label: "`kports probe` (all 10,000)",
            argv: argv(&ip, all),
            ok_codes: &[1],
            parse: parse_kports,
            ports: PORTS,
            runs: Vec::new(),
            mismatches: 0,
        },
        Tool {
            label: "`kports probe` (open and refused only, 6,600)",
            argv: argv(&ip, live),
            ok_codes: &[1],
            parse: parse_kports,
            ports: OPEN + REFUSED,
            runs: Vec::new(),
            mismatches: 0,
        },
        Tool {
            label: "`kports probe` (all, open files limited to 1024)",
            argv: argv(&ip, limited),
            ok_codes: &[1],
            parse: parse_kports,
            ports: PORTS,
            runs: Vec::new(),
            mismatches: 0,
        },
        Tool {
            label: "`nmap -sT -T4 -Pn -n -oX -` (all 10,000)",
            argv: argv(&ip, nmap_args),
            ok_codes: &[0],
            parse: parse_nmap,
            ports: PORTS,
            runs: Vec::new(),
            mismatches: 0,
        },
    ];
    for round in 0..args.runs {
        for k in 0..tools.len() {
            let i = (k + round as usize) % tools.len();
            let t = &mut tools[i];
            let r = measure::run(&t.argv, Duration::from_secs(600), Stdout::Capture)?;
            let ok = matches!(r.end, measure::End::Exit(c) if t.ok_codes.contains(&c));
            if !ok {
                bail!(
                    "`{}` failed ({}): {}",
                    measure::shown(&t.argv),
                    r.end,
                    r.stderr_text()
                );
            }
            let wrong = check(t, &r.stdout)?;
            if wrong > 0 {
                let path = std::env::temp_dir().join(format!("kports-probe-bench-{i}.out"));
                std::fs::write(&path, &r.stdout)?;
                eprintln!(
                    "{} wrong statuses; its output is in {}",
                    wrong,
                    path.display()
                );
            }
            t.mismatches += wrong;
            eprintln!("round {round}: {} {:.2} s", t.label, r.wall.as_secs_f64());
            t.runs.push(Run {
                stdout: Vec::new(),
                ..r
            });
        }
    }
    // What ru_maxrss reports for a command that does nothing: the floor under every peak.
    let floor = measure::run(
        &Argv::new(&ip, &["netns", "exec", &ns.client, "/bin/true"]),
        Duration::from_secs(30),
        Stdout::Null,
    )?;
    let med = |t: &Tool| {
        median(
            &t.runs
                .iter()
                .map(|r| r.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    let peak = |t: &Tool| t.runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let timeout_s = args.timeout_ms as f64 / 1000.0;
    let full = med(&tools[0]).unwrap_or(f64::NAN);
    let live_t = med(&tools[1]).unwrap_or(f64::NAN);
    let nmap_t = med(&tools[3]).unwrap_or(f64::NAN);
    let bound = 1.3 * timeout_s + live_t;
    println!(
        "| command | median s | min s | max s | peak MiB | statuses wrong |\n|---|---:|---:|---:|---:|---:|"
    );
    for t in &tools {
        let xs: Vec<f64> = t.runs.iter().map(|r| r.wall.as_secs_f64()).collect();
        let mn = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let mx = xs.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {} | {} | {:.1} | {} |",
            t.label,
            med(t).map_or("-".into(), secs),
            secs(mn),
            secs(mx),
            peak(t),
            t.mismatches
        );
    }
    println!(
        "| `ip netns exec ... /bin/true` (the memory floor) | {} | | | {:.1} | |",
        secs(floor.wall.as_secs_f64()),
        floor.max_rss_kib as f64 / 1024.0
    );
    println!();
    println!(
        "kports, all targets: {} s; bound 1.3 x {timeout_s} s timeout + {} s (open and refused) = {} s: {}.",
        secs(full),
        secs(live_t),
        secs(bound),
        if full <= bound { "within" } else { "OVER" }
    );
    println!(
        "nmap / kports: {:.1}x ({} s / {} s).",
        nmap_t / full,
        secs(nmap_t),
        secs(full)
    );
    let wrong: usize = tools.iter().map(|t| t.mismatches).sum();
    Ok(wrong == 0 && full <= bound && full <= nmap_t)
}
