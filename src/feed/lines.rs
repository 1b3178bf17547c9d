//! Splits a publisher's byte stream into lines, holding at most one line between reads.
//!
//! A publisher decides where its reads end, not us: a line may arrive in
//! pieces, and a line without end must not grow a buffer without end. The
//! splitter keeps only the unfinished line (at most [`MAX_LINE`] + 1 bytes,
//! room for a `\r`), reports an overlong line once as `too_long` and skips it
//! up to its newline. TCP publishers and file replay share it.

use super::parse::MAX_LINE;
use crate::metrics::RejectReason;

/// Most bytes of an unfinished line kept between reads: a line and its `\r`.
const KEEP: usize = MAX_LINE + 1;

#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Skipping the rest of a line that was already rejected as too long.
    skipping: bool,
    /// `buf` holds a line handed out by the last call: clear it before going on.
    emitted: bool,
}

impl LineSplitter {
    fn reset_emitted(&mut self) {
        if self.emitted {
            self.buf.clear();
            self.emitted = false;
        }
    }

    /// The next line (without its `\n`) from `data`, which is advanced past
    /// it; `None` once `data` has no complete line left (its tail is kept for
    /// the next call). `eof`: `data` ends the stream, so its last line needs no
    /// newline (call again with empty `data` once a read returns nothing). A
    /// line too long to keep is `Err(TooLong)`, once. Lines that arrive whole
    /// are handed out without copying, whatever their length: the parser
    /// rejects those over [`MAX_LINE`].
    pub fn next_line<'s, 'd: 's>(
        &'s mut self,
        data: &mut &'d [u8],
        eof: bool,
    ) -> Option<Result<&'s [u8], RejectReason>> {
        self.reset_emitted();
        loop {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                let tail = std::mem::take(data);
                if self.skipping {
                    return None;
                }
                if self.buf.len().saturating_add(tail.len()) > KEEP {
                    self.buf.clear();
                    self.skipping = true;
                    return Some(Err(RejectReason::TooLong));
                }
                if eof && self.buf.is_empty() {
                    return (!tail.is_empty()).then_some(Ok(tail));
                }
                self.buf.extend_from_slice(tail);
                if eof {
                    self.emitted = true;
                    return Some(Ok(&self.buf));
                }
                return None;
            };
            let (head, rest) = (&data[..nl], &data[nl + 1..]);
            *data = rest;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.buf.is_empty() {
                return Some(Ok(head));
            }
            if self.buf.len().saturating_add(head.len()) > KEEP {
                self.buf.clear();
                return Some(Err(RejectReason::TooLong));
            }
            self.buf.extend_from_slice(head);
            self.emitted = true;
            return Some(Ok(&self.buf));
        }
    }

    /// Whether part of a line that is not blank has arrived and waits for its newline.
    pub fn has_partial_line(&self) -> bool {
        !self.emitted && !self.skipping && self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Result<String, RejectReason>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        let end: &[u8] = b"";
        for (i, c) in chunks.iter().chain([&end]).enumerate() {
            let mut data = *c;
            while let Some(l) = s.next_line(&mut data, i == chunks.len()) {
                out.push(l.map(|l| String::from_utf8_lossy(l).into_owned()));
            }
        }
        out
    }

    fn ok(v: &[&str]) -> Vec<Result<String, RejectReason>> {
        v.iter().map(|s| Ok(s.to_string())).collect()
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_the_last_needs_no_newline() {
        assert_eq!(
            lines(&[b"ab", b"c\nde", b"f\n\ng"]),
            ok(&["abc", "def", "", "g"])
        );
        assert_eq!(lines(&[b"a\n"]), ok(&["a"]));
        assert_eq!(lines(&[b""]), ok(&[]));
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_one_kept() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut want = ok(&["a"]);
        want.push(Err(RejectReason::TooLong));
        want.extend(ok(&["ok"]));
        assert_eq!(lines(&[b"a\n", &long, &long, b"tail\nok\n"]), want);
        // Finished by its newline in the next read: still one rejection, no copy kept.
        let mut want = vec![Err(RejectReason::TooLong)];
        want.extend(ok(&["ok"]));
        assert_eq!(lines(&[&long[..MAX_LINE], &long[..20], b"\nok"]), want);
        // An overlong line with no newline at all is not handed out at the end.
        assert_eq!(lines(&[&long]), vec![Err(RejectReason::TooLong)]);
    }

    #[test]
    fn a_line_of_max_length_with_its_cr_is_kept_whole() {
        let mut line = vec![b'y'; MAX_LINE];
        line.push(b'\r');
        let got = lines(&[&line[..10], &line[10..], b"\n"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().len(), MAX_LINE + 1);
    }

    #[test]
    fn the_kept_part_never_grows_past_one_line() {
        let mut s = LineSplitter::default();
        let chunk = vec![b'z'; 1000];
        for _ in 0..100 {
            let mut data = &chunk[..];
            while s.next_line(&mut data, false).is_some() {}
            assert!(s.buf.len() <= KEEP);
        }
        assert!(!s.has_partial_line(), "skipping an overlong line");
        let mut data = &b"\n{\"sym"[..];
        while s.next_line(&mut data, false).is_some() {}
        assert!(s.has_partial_line());
        let mut end = &b""[..];
        assert_eq!(s.next_line(&mut end, true), Some(Ok(&b"{\"sym"[..])));
        assert_eq!(
            s.next_line(&mut end, true),
            None,
            "the last line is handed out once"
        );
    }
}
