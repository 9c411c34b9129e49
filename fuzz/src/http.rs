//! HTTP/1.1 responses read back from the bytes a server wrote, for the targets that check what
//! was answered (not what a client would accept: a stream that is not responses ends the list).

/// The `(status, body)` of each response in `out`, in order. A body is framed by
/// `Content-Length` or chunked; without either it runs to the end.
pub fn responses(mut out: &[u8]) -> Vec<(u16, &[u8])> {
    let mut all = Vec::new();
    while let Some(end) = find(out, b"\r\n\r\n") {
        let head = &out[..end];
        let rest = &out[end + 4..];
        let mut lines = head.split(|&b| b == b'\n');
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = status_line
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix(b"HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        if (100..200).contains(&status) {
            all.push((status, &rest[..0]));
            out = rest;
            continue;
        }
        let header = |name: &str| {
            head.split(|&b| b == b'\n').skip(1).find_map(|l| {
                let l = std::str::from_utf8(l).ok()?.trim_end();
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let body = rest.get(..n);
            let after = rest.get(n..).unwrap_or_default();
            let framed = body.is_some() && (after.is_empty() || after.starts_with(b"HTTP/1."));
            if rest.starts_with(b"HTTP/1.") && !framed {
                // The answer to HEAD: the length of a body that is not sent.
                all.push((status, &rest[..0]));
                out = rest;
            } else {
                all.push((status, body.unwrap_or(rest)));
                out = after;
            }
        } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            // The first chunk is what the checks need; the rest is skipped to the last chunk.
            let body = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest, |i| &rest[i + 1..]);
            all.push((status, body));
            out = match find(rest, b"\r\n0\r\n\r\n") {
                Some(i) => &rest[i + 7..],
                None => &[],
            };
        } else {
            all.push((status, rest));
            out = &[];
        }
    }
    all
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::responses;

    #[test]
    fn framed_by_length_chunks_or_the_end() {
        let out = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}\
HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nwww-authenticate: Bearer\r\n\r\n{}\
HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.0 404 Not Found\r\n\r\nthe rest";
        let r = responses(out);
        let got: Vec<(u16, &str)> = r
            .iter()
            .map(|(s, b)| (*s, std::str::from_utf8(b).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (200, "{\"a\":1}"),
                (401, "{}"),
                (
                    200,
                    "abc\r\n0\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nthe rest"
                ),
                (404, "the rest")
            ]
        );
    }

    #[test]
    fn a_head_answer_has_no_body() {
        let out = b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
        assert_eq!(responses(out), [(200, &b""[..]), (200, &b"ok\n"[..])]);
    }

    #[test]
    fn an_interim_answer_has_no_body() {
        let out = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(responses(out), [(100, &b""[..]), (200, &b"ok"[..])]);
    }

    #[test]
    fn what_is_not_an_answer_ends_the_list() {
        assert!(responses(b"").is_empty());
        assert!(responses(b"garbage\r\n\r\n").is_empty());
    }
}
