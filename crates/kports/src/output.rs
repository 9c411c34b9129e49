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
    /// More columns: state, uid, inode, namespace, container, pod, command line.
    Wide,
    /// One JSON document (see docs/schema.md).
    Json,
}

/// Where a command writes: standard output, or any writer (a test's buffer).
pub struct Out<W: Write = BufWriter<Stdout>> {
    w: W,
    colour: bool,
}

impl<W: Write> std::fmt::Debug for Out<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out").field("colour", &self.colour).finish()
    }
}

impl Out {
    pub fn stdout() -> Out {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(1) } == 1;
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out::new(
            BufWriter::with_capacity(1 << 16, io::stdout()),
            tty && !no_colour,
        )
    }
}

impl<W: Write> Out<W> {
    /// Output to `w`, in colour when `colour`.
    pub fn new(w: W, colour: bool) -> Out<W> {
        Out { w, colour }
    }

    /// The writer, for a test to read what was written.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.w
    }

    pub fn json<T: Serialize>(&mut self, doc: &T) -> io::Result<()> {
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
    /// The last column is not padded.
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
        for (c, h) in headers.iter().enumerate() {
            pad(&mut line, h, widths[c], c + 1 == headers.len());
        }
        self.heading(line.trim_end())?;
        for r in 0..rows {
            line.clear();
            for (c, &w) in widths.iter().enumerate() {
                buf.clear();
                cell(r, c, &mut buf);
                pad(&mut line, &untrusted(&buf), w, c + 1 == headers.len());
            }
            self.line(line.trim_end())?;
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
