//! Output: aligned tables for people, one versioned JSON document for scripts.
//!
//! Tables are written in two passes over the rows (widths, then text) so that even a census of
//! hundreds of thousands of sockets is never held as a grid of strings. Colour is used only on a
//! terminal and never when NO_COLOR is set. A closed pipe (`kports listen | head`) ends output
//! quietly: the write error is passed up and `main` treats it as success.
//!
//! Every line, cell and warning goes through [`kports_core::escape::untrusted`]: process names,
//! command lines, interface names and nft comments come from others and must not drive the
//! terminal. JSON needs no such care (serde_json escapes control characters).

use std::fmt::Write as _;
use std::io::{self, BufWriter, Stdout, Write};

use kports_core::Warning;
pub use kports_core::document::Document;
use kports_core::escape::untrusted;
use serde::Serialize;

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// More columns, as the command has them (listen: uid, inode, namespace, container, pod,
    /// command line; node: index, tunnel port).
    Wide,
    /// One JSON document (see docs/schema.md).
    Json,
}

/// Columns that text for a pipe or a file is wrapped to (a terminal's own width otherwise).
pub const PIPE_WIDTH: usize = 100;

/// Where a command writes: standard output, or any writer (a test's buffer).
pub struct Out<W: Write = BufWriter<Stdout>> {
    w: W,
    colour: bool,
    /// The terminal's width: a table's last column wraps to it. None off a terminal.
    width: Option<usize>,
    /// Tables start with their header line (not with `--no-headers`).
    headers: bool,
    /// Frames of `--watch` written so far.
    frames: u64,
    /// A JSON document was written (frames of `--watch` need no blank line between them).
    json: bool,
}

impl<W: Write> std::fmt::Debug for Out<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("colour", &self.colour)
            .field("width", &self.width)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Out {
    pub fn stdout() -> Out {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(1) } == 1;
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let mut out = Out::new(
            BufWriter::with_capacity(1 << 16, io::stdout()),
            tty && !no_colour,
        );
        out.width = if tty { terminal_width() } else { None };
        out
    }
}

/// The width of the terminal on standard output: `COLUMNS` when set, else what the terminal
/// says; none when it says nothing.
fn terminal_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(c);
    }
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct passed; fd 1 is ours to ask.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// Splits `s` into lines of at most `width` characters at spaces (a longer word stays whole;
/// at least 20 columns).
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(20);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

impl<W: Write> Out<W> {
    /// Output to `w`, in colour when `colour`.
    pub fn new(w: W, colour: bool) -> Out<W> {
        Out {
            w,
            colour,
            width: None,
            headers: true,
            frames: 0,
            json: false,
        }
    }

    /// Tables without their header line (`--no-headers`).
    pub fn without_headers(mut self) -> Out<W> {
        self.headers = false;
        self
    }

    /// Fits tables to `width` columns, as on a terminal that wide.
    #[cfg(test)]
    pub fn with_width(mut self, width: usize) -> Out<W> {
        self.width = Some(width);
        self
    }

    /// Starts one frame of `--watch`: on a terminal the screen is cleared and the interval
    /// shown; piped, frames follow one another (a blank line between tables).
    pub fn frame(&mut self, every: std::time::Duration) -> io::Result<()> {
        if self.width.is_some() {
            self.w.write_all(b"\x1b[H\x1b[2J")?;
            self.heading(&format!("every {}s (Ctrl-C stops)", every.as_secs_f64()))?;
            self.w.write_all(b"\n")?;
        } else if self.frames > 0 && !self.json {
            self.w.write_all(b"\n")?;
        }
        self.frames += 1;
        Ok(())
    }

    /// The terminal's width; none off a terminal.
    pub fn width(&self) -> Option<usize> {
        self.width
    }

    /// The writer, for a test to read what was written.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.w
    }

    pub fn json<T: Serialize>(&mut self, doc: &T) -> io::Result<()> {
        self.json = true;
        serde_json::to_writer_pretty(&mut self.w, doc).map_err(io::Error::from)?;
        self.w.write_all(b"\n")
    }

    /// Writes text that kports generated whole from its own definitions (a completion
    /// script), as it is: nothing in it comes from the node, so there is nothing to escape.
    pub fn generated(&mut self, s: &str) -> io::Result<()> {
        self.w.write_all(s.as_bytes())?;
        self.w.write_all(b"\n")
    }

    /// Writes a text kports composed of several lines (a script, an XML report): each line is
    /// escaped on its own, so its line breaks stay while what it quotes cannot add any.
    pub fn lines(&mut self, s: &str) -> io::Result<()> {
        for l in s.split('\n') {
            self.line(l)?;
        }
        Ok(())
    }

    /// Writes one line; a line break or escape sequence inside `s` is shown escaped.
    pub fn line(&mut self, s: &str) -> io::Result<()> {
        self.w.write_all(untrusted(s).as_bytes())?;
        self.w.write_all(b"\n")
    }

    /// Bold header line on a terminal.
    pub fn heading(&mut self, s: &str) -> io::Result<()> {
        if self.colour {
            writeln!(self.w, "\x1b[1m{}\x1b[0m", untrusted(s))
        } else {
            self.line(s)
        }
    }

    /// Writes `rows` rows of `headers.len()` columns; `cell(row, col, buf)` writes one cell.
    /// The last column is not padded; on a terminal it wraps to the terminal's width, its
    /// further lines under its start.
    pub fn table(
        &mut self,
        headers: &[&str],
        rows: usize,
        mut cell: impl FnMut(usize, usize, &mut String),
    ) -> io::Result<()> {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        let mut buf = String::new();
        for r in 0..rows {
            for (c, w) in widths.iter_mut().enumerate() {
                buf.clear();
                cell(r, c, &mut buf);
                *w = (*w).max(untrusted(&buf).chars().count());
            }
        }
        let mut line = String::new();
        if self.headers {
            for (c, h) in headers.iter().enumerate() {
                pad(&mut line, h, widths[c], c + 1 == headers.len());
            }
            self.heading(line.trim_end())?;
        }
        // Where the last column starts, and how wide it may be on this terminal.
        let last = headers.len().saturating_sub(1);
        let indent: usize = widths[..last].iter().map(|w| w + 2).sum();
        let room = self
            .width
            .map(|w| w.saturating_sub(indent))
            .filter(|r| *r >= 20);
        for r in 0..rows {
            line.clear();
            for (c, &w) in widths.iter().enumerate() {
                buf.clear();
                cell(r, c, &mut buf);
                if c == last
                    && let Some(room) = room
                {
                    // A cell's leading spaces (a sub-row's indent) stay, on every line.
                    let text = untrusted(&buf);
                    let body = text.trim_start_matches(' ');
                    let lead = text.len() - body.len();
                    let mut parts = wrap(body, room.saturating_sub(lead)).into_iter();
                    line.extend(std::iter::repeat_n(' ', lead));
                    line.push_str(&parts.next().unwrap_or_default());
                    for p in parts {
                        line.push('\n');
                        line.extend(std::iter::repeat_n(' ', indent + lead));
                        line.push_str(&p);
                    }
                } else {
                    pad(&mut line, &untrusted(&buf), w, c == last);
                }
            }
            for l in line.split('\n') {
                self.line(l.trim_end())?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn pad(line: &mut String, s: &str, width: usize, last: bool) {
    line.push_str(s);
    if !last {
        let n = width.saturating_sub(s.chars().count()) + 2;
        line.extend(std::iter::repeat_n(' ', n));
    }
}

/// Prints warnings to standard error, where they do not disturb a pipe.
pub fn warn(warnings: &[Warning]) {
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        // SAFETY: isatty only inspects the descriptor.
        && unsafe { libc::isatty(2) } == 1;
    for w in warnings {
        if colour {
            eprintln!("\x1b[33mwarning\x1b[0m: {}", untrusted(&w.message));
        } else {
            eprintln!("warning: {}", untrusted(&w.message));
        }
    }
}

/// `addr:port`, with brackets around IPv6 addresses.
pub fn endpoint(buf: &mut String, addr: &std::net::IpAddr, port: u16) {
    let _ = match addr {
        std::net::IpAddr::V4(a) => write!(buf, "{a}:{port}"),
        std::net::IpAddr::V6(a) => write!(buf, "[{a}]:{port}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(out: Out<Vec<u8>>) -> String {
        let mut out = out;
        let rows = [
            (
                "error",
                "a long message that does not fit on one line of this narrow terminal",
            ),
            ("", "  $ ss -tlnp 'sport = :10250'"),
        ];
        out.table(&["SEVERITY", "MESSAGE"], rows.len(), |r, c, b| {
            b.push_str(if c == 0 { rows[r].0 } else { rows[r].1 });
        })
        .unwrap();
        String::from_utf8(out.into_inner()).unwrap()
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a bb ccc dddd", 20), ["a bb ccc dddd"]);
        let long = "word ".repeat(10);
        assert_eq!(
            wrap(&long, 20),
            ["word word word word", "word word word word", "word word"]
        );
        assert_eq!(wrap("", 20), [""]);
    }

    #[test]
    fn tables_fit_the_terminal_and_drop_headers_when_asked() {
        // Off a terminal: one line per row, whatever its length.
        assert_eq!(
            table(Out::new(Vec::new(), false)),
            concat!(
                "SEVERITY  MESSAGE\n",
                "error     a long message that does not fit on one line of this narrow terminal\n",
                "            $ ss -tlnp 'sport = :10250'\n",
            )
        );
        // 40 columns: the last column wraps under its start, a sub-row keeps its indent.
        assert_eq!(
            table(Out::new(Vec::new(), false).with_width(40)),
            concat!(
                "SEVERITY  MESSAGE\n",
                "error     a long message that does not\n",
                "          fit on one line of this narrow\n",
                "          terminal\n",
                "            $ ss -tlnp 'sport = :10250'\n",
            )
        );
        assert_eq!(
            table(Out::new(Vec::new(), false).without_headers())
                .lines()
                .next(),
            Some("error     a long message that does not fit on one line of this narrow terminal")
        );
    }
}
