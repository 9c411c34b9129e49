//! Load test of one `kports agent` on loopback: requests per second on its routes while it
//! keeps reporting on the node and probing its peers (every 5 s), its memory over the run, and
//! its CPU when idle at the default interval. Its peers are an inventory of loopback addresses
//! (127.0.0.2, 127.0.0.3: its probes of them and its matrix's requests to their agents are
//! refused at once). Bounded in time and connections; talks only to 127.0.0.0/8.
//!
//! Usage: kports-agent-load [--kports PATH] [--seconds N] [--connections N] [--idle-seconds N]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Agent {
    child: Child,
    addr: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill() with the pid of a child started here and not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's inventory: itself and two loopback peers.
const INVENTORY: &str = "nodes:
  - name: self
    address: 127.0.0.1
    roles: [control-plane]
  - name: peer-a
    address: 127.0.0.2
    roles: [worker]
  - name: peer-b
    address: 127.0.0.3
    roles: [control-plane]
";

fn start(kports: &str, interval: u64, inventory: &std::path::Path) -> Result<Agent> {
    let mut child = Command::new(kports)
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--node-name",
            "self",
            "--probe-timeout",
            "1s",
            "--inventory",
        ])
        .arg(inventory)
        .arg("--interval")
        .arg(interval.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {kports}"))?;
    let mut stderr = BufReader::new(child.stderr.take().context("no stderr")?);
    let mut first = String::new();
    stderr.read_line(&mut first)?;
    // Keep draining stderr so the agent never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let addr = first
        .trim()
        .strip_prefix("kports agent: serving on http://")
        .with_context(|| format!("unexpected first line: {first}"))?
        .to_string();
    let agent = Agent { child, addr };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut c = Conn::open(&agent.addr)?;
        if c.get("/readyz")?.0 == 200 {
            return Ok(agent);
        }
        if Instant::now() > deadline {
            bail!("the agent was not ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Status and body length.
    fn get(&mut self, path: &str) -> Result<(u16, usize)> {
        write!(self.writer, "GET {path} HTTP/1.1\r\nHost: kports\r\n\r\n")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.get(9..12).context("no status line")?.parse()?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, length))
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime + cutime + cstime, in clock ticks (children: the checks it runs).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is f[0], utime is field 14 of the line (f[11]).
    f[11..15].iter().filter_map(|v| v.parse::<u64>().ok()).sum()
}

fn load(agent: &Agent, path: &'static str, seconds: u64, connections: usize) -> Result<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..connections {
        let (stop, done, bytes, bad) = (stop.clone(), done.clone(), bytes.clone(), bad.clone());
        let addr = agent.addr.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            let mut c = Conn::open(&addr)?;
            while !stop.load(Ordering::Relaxed) {
                let (status, len) = c.get(path)?;
                if status != 200 {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let pid = agent.child.id();
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_kib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    let n = done.load(Ordering::Relaxed);
    let first = rss.first().copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    let max = rss.iter().copied().max().unwrap_or(0);
    Ok(format!(
        "| `{path}` | {connections} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        n as f64 / elapsed,
        bad.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / n.max(1) as f64 / 1024.0,
        first as f64 / 1024.0,
        last as f64 / 1024.0,
        max as f64 / 1024.0,
    ))
}

fn main() -> Result<()> {
    let mut kports = "target/release/kports".to_string();
    let mut seconds = 20;
    let mut connections = 8;
    let mut idle_seconds = 120;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("a flag needs a value");
        match a.as_str() {
            "--kports" => kports = value()?,
            "--seconds" => seconds = value()?.parse::<u64>()?.clamp(1, 600),
            "--connections" => connections = value()?.parse::<usize>()?.clamp(1, 256),
            "--idle-seconds" => idle_seconds = value()?.parse::<u64>()?.clamp(10, 1800),
            _ => bail!("unknown argument {a}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("kports-agent-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let inventory = dir.join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY)?;
    let result = run(&kports, &inventory, seconds, connections, idle_seconds);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(
    kports: &str,
    inventory: &std::path::Path,
    seconds: u64,
    connections: usize,
    idle_seconds: u64,
) -> Result<()> {
    let agent = start(kports, 5, inventory)?;
    println!(
        "Load: {connections} keep-alive connections per route for {seconds} s each; the agent reports on the node and probes two loopback peers every 5 s meanwhile.\n"
    );
    println!(
        "| route | connections | requests/s | non-200 | KiB per answer | RSS at 1 s (MiB) | RSS at end (MiB) | RSS max (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for path in [
        "/metrics",
        "/api/v1/report",
        "/api/v1/probes",
        "/api/v1/matrix",
        "/healthz",
    ] {
        println!("{}", load(&agent, path, seconds, connections)?);
    }
    drop(agent);

    let agent = start(kports, 30, inventory)?;
    let pid = agent.child.id();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    println!(
        "\nIdle at the default interval (30 s, jittered), over {idle_seconds} s: {cpu:.2}% of one core (reports and probes included), RSS {:.1} MiB.",
        rss_kib(pid) as f64 / 1024.0
    );
    Ok(())
}
