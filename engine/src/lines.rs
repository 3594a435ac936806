//! Splitting tool output into log lines with bounded memory. Output arrives in
//! chunks that need not end at a line; a line ends at `\n` or at a `\r` (the
//! repaint of a progress meter), and no line is kept longer than a cap: the rest
//! is counted and marked as cut, so one 100 MB line costs at most the cap.

/// The longest line any log keeps (bytes, before the cut marker).
pub const MAX_LINE: usize = 8 * 1024;

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    /// Ended by a lone `\r`: a progress repaint the next piece replaces.
    pub repaint: bool,
}

/// Accumulates chunks and hands out whole lines.
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    max: usize,
    cut: usize,
    /// The previous chunk ended in `\r` (its line is still in `buf`).
    pending_cr: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            cut: 0,
            pending_cr: false,
        }
    }

    /// Feeds a chunk; `out` receives every line it completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut impl FnMut(Piece)) {
        let mut rest = chunk;
        if self.pending_cr {
            // The previous chunk ended in `\r`: only now is it known whether
            // that was half of a `\r\n`.
            self.pending_cr = false;
            match rest.strip_prefix(b"\n") {
                Some(after) => {
                    rest = after;
                    out(self.emit(false));
                }
                None => out(self.emit(true)),
            }
        }
        while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.take(&rest[..i]);
            if rest[i] == b'\n' {
                rest = &rest[i + 1..];
                out(self.emit(false));
            } else {
                match rest.get(i + 1) {
                    Some(b'\n') => {
                        rest = &rest[i + 2..];
                        out(self.emit(false));
                    }
                    Some(_) => {
                        rest = &rest[i + 1..];
                        out(self.emit(true));
                    }
                    None => {
                        self.pending_cr = true;
                        return;
                    }
                }
            }
        }
        self.take(rest);
    }

    /// What is left when the output ends (a last line without a newline).
    pub fn finish(&mut self, out: &mut impl FnMut(Piece)) {
        if self.pending_cr || !self.buf.is_empty() || self.cut > 0 {
            self.pending_cr = false;
            out(self.emit(false));
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        let keep = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..keep]);
        self.cut += bytes.len() - keep;
    }

    fn emit(&mut self, repaint: bool) -> Piece {
        let mut text = String::from_utf8_lossy(&self.buf).into_owned();
        if self.cut > 0 {
            text.push_str(&format!(" … [{} bytes cut]", self.cut));
        }
        self.buf.clear();
        self.cut = 0;
        Piece { text, repaint }
    }
}

/// `line` cut to [`MAX_LINE`] bytes (at a character boundary), marked when cut.
pub fn capped(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_LINE {
        return line.into();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … [{} bytes cut]", &line[..end], line.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |p| out.push((p.text, p.repaint)));
        }
        s.finish(&mut |p| out.push((p.text, p.repaint)));
        out
    }

    #[test]
    fn lines_end_at_newlines_and_carriage_returns_across_chunks() {
        assert_eq!(
            split(
                &[b"one\ntw", b"o\r\nthree 1%\rthree 50%\r", b"three 100%\n", b"last"],
                100
            ),
            vec![
                ("one".into(), false),
                ("two".into(), false),
                ("three 1%".into(), true),
                ("three 50%".into(), true),
                ("three 100%".into(), false),
                ("last".into(), false),
            ]
        );
        // `\r\n` split between two chunks is one line end, not an empty line.
        assert_eq!(
            split(&[b"a\r", b"\nb\n"], 100),
            vec![("a".into(), false), ("b".into(), false)]
        );
        assert_eq!(
            split(&[b"a\r", b"b\r"], 100),
            vec![("a".into(), true), ("b".into(), false)]
        );
    }

    #[test]
    fn a_huge_line_is_cut_and_memory_stays_at_the_cap() {
        let mut s = Splitter::new(16);
        let mut out = Vec::new();
        for _ in 0..1000 {
            s.push(&[b'x'; 1000], &mut |p| out.push(p.text));
            assert!(s.buf.len() <= 16);
        }
        s.push(b"\nnext\n", &mut |p| out.push(p.text));
        assert_eq!(
            out,
            vec![format!("{} … [999984 bytes cut]", "x".repeat(16)), "next".into()]
        );
    }

    #[test]
    fn capped_cuts_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let c = capped(&long);
        assert!(c.ends_with("bytes cut]") && c.len() < MAX_LINE + 40, "{}", c.len());
        assert_eq!(capped("short"), "short");
    }
}
