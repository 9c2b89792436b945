//! TOML syntax errors in the file's terms: the key path the parser was
//! reading when it failed, its message, then line and column
//! (`routes.flan.attempts: duplicate key (line 12, column 1)`).
//!
//! toml's `de::Error` has a message and a byte span but no key for a syntax
//! error (its list of keys is private, and empty then), so the path is
//! recovered from the text before the span: [`Locator`] follows just enough
//! TOML (table headers, arrays of tables, dotted and quoted keys, the four
//! kinds of strings, arrays, inline tables, comments) to know which table,
//! key, array element or inline-table key a byte belongs to. The text before
//! the error parsed, so the scanner may be lenient about everything else.

use std::collections::HashMap;

use super::diag::{index_path, key_path};

/// The error for a file that is not valid TOML, on one line.
pub(super) fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let Some(span) = error.span() else {
        return format!("TOML syntax error: {message}");
    };
    let offset = span.start.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let at_line_end = matches!(text.as_bytes().get(offset), None | Some(b'\n' | b'\r'));
    let message = plain(message, at_line_end);
    let mut path = locate(text, offset);
    if message.starts_with("unclosed array") && matches!(path.last(), Some(Seg::Index(_))) {
        // The array is unclosed, not the element the text stopped in.
        path.pop();
    }
    if path.is_empty() {
        format!("TOML syntax error at line {line}, column {column}: {message}")
    } else {
        format!(
            "{}: {message} (line {line}, column {column})",
            render(&path)
        )
    }
}

/// toml's message, reworded where it speaks of the parser rather than the
/// file: an integer past 64 bits ("invalid type: integer `…` as i128"), a
/// string that runs into the end of its line or file, a key with nothing
/// after its `=`.
fn plain(message: &str, at_line_end: bool) -> String {
    if message.starts_with("invalid type: integer `") && message.contains(" as i128") {
        return format!(
            "integer out of range, TOML integers are between {} and {}",
            i64::MIN,
            i64::MAX
        );
    }
    if at_line_end {
        for (kind, quotes) in [
            ("invalid multi-line basic string", r#"""""#),
            ("invalid multi-line literal string", "'''"),
            ("invalid basic string", r#"""#),
            ("invalid literal string", "'"),
        ] {
            if message.starts_with(kind) {
                return format!("unterminated string, expected a closing `{quotes}`");
            }
        }
        if message.starts_with("string values must be quoted") {
            return "missing value".to_owned();
        }
    }
    message.to_owned()
}

// === impl Locator ===

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path as the rest of the config module writes it (`a."b.c"[1].d`).
fn render(path: &[Seg]) -> String {
    path.iter().fold(String::new(), |out, seg| match seg {
        Seg::Key(key) => key_path(&out, key),
        Seg::Index(i) => index_path(&out, *i),
    })
}

/// The path at byte `offset` of `text`; empty at the top level, outside any
/// table or key.
fn locate(text: &str, offset: usize) -> Vec<Seg> {
    let mut locator = Locator {
        text: text.as_bytes(),
        pos: 0,
        target: offset,
        table: Vec::new(),
        arrays: HashMap::new(),
    };
    match locator.document() {
        Err(Found(path)) => path,
        Ok(()) => locator.table,
    }
}

/// The scan reached the target; the path there.
struct Found(Vec<Seg>);

type Scan = Result<(), Found>;

/// An open array (the index of the current element) or inline table (the key
/// being read or last read, and whether a key comes next).
enum Frame {
    Array(usize),
    Inline { key: Vec<String>, want_key: bool },
}

struct Locator<'a> {
    text: &'a [u8],
    pos: usize,
    target: usize,
    /// The table of the last header, array-of-tables indices included.
    table: Vec<Seg>,
    /// The index of the last `[[…]]` element of each array of tables, by path.
    arrays: HashMap<String, usize>,
}

impl Locator<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s))
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.pos += 1;
        }
    }

    fn skip_spaces(&mut self) {
        self.skip(|c| matches!(c, b' ' | b'\t' | b'\r'));
    }

    fn skip_comment(&mut self) {
        self.skip(|c| c != b'\n');
    }

    /// Stops the scan with `path` once the target (or the end) is reached.
    fn stop_at_target(&self, path: impl FnOnce() -> Vec<Seg>) -> Scan {
        if self.pos >= self.target || self.pos >= self.text.len() {
            Err(Found(path()))
        } else {
            Ok(())
        }
    }

    fn document(&mut self) -> Scan {
        loop {
            self.skip(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
            if self.peek() == Some(b'#') {
                self.skip_comment();
                continue;
            }
            // A key or header starting at the target is read first: the
            // error is about it (a duplicate key points at its first byte).
            if self.pos > self.target || self.pos >= self.text.len() {
                return Err(Found(self.table.clone()));
            }
            if self.peek() == Some(b'[') {
                self.header()?;
            } else {
                self.key_value()?;
            }
        }
    }

    /// `[a.b]` or `[[a.b]]`.
    fn header(&mut self) -> Scan {
        let array = self.starts_with(b"[[");
        self.pos += if array { 2 } else { 1 };
        let (keys, end) = self.key();
        let mut path = self.resolve(keys);
        if self.target < end {
            return Err(Found(path));
        }
        self.skip_spaces();
        self.stop_at_target(|| path.clone())?;
        if array {
            let index = self
                .arrays
                .entry(render(&path))
                .and_modify(|i| *i += 1)
                .or_insert(0);
            path.push(Seg::Index(*index));
        }
        self.table = path;
        self.skip(|c| c == b']');
        Ok(())
    }

    /// A header's keys, each but the last followed by the current index of
    /// the array of tables it names, if it is one (`[[a]]` then `[a.b]` is
    /// `a[0].b`).
    fn resolve(&self, keys: Vec<String>) -> Vec<Seg> {
        let mut path = Vec::new();
        let last = keys.len().saturating_sub(1);
        for (i, key) in keys.into_iter().enumerate() {
            path.push(Seg::Key(key));
            if i < last {
                if let Some(index) = self.arrays.get(&render(&path)) {
                    path.push(Seg::Index(*index));
                }
            }
        }
        path
    }

    /// `key = value` up to the end of its line (or of its value, which may
    /// span lines).
    fn key_value(&mut self) -> Scan {
        let (keys, end) = self.key();
        let mut path = self.table.clone();
        path.extend(keys.into_iter().map(Seg::Key));
        if self.target < end {
            return Err(Found(path));
        }
        self.skip_spaces();
        self.stop_at_target(|| path.clone())?;
        if self.peek() == Some(b'=') {
            self.pos += 1;
        }
        self.value(&path)
    }

    /// A value, following its arrays and inline tables, until the newline
    /// that ends it. Every branch consumes at least one byte.
    fn value(&mut self, base: &[Seg]) -> Scan {
        let mut frames: Vec<Frame> = Vec::new();
        loop {
            self.skip_spaces();
            let Some(c) = self.peek() else {
                return Err(Found(value_path(base, &frames)));
            };
            if let Some(Frame::Inline {
                want_key: want_key @ true,
                ..
            }) = frames.last_mut()
            {
                *want_key = false;
                if !matches!(c, b'\n' | b'}' | b',' | b'#' | b'=') {
                    if self.pos > self.target {
                        return Err(Found(value_path(base, &frames)));
                    }
                    let (keys, end) = self.key();
                    if let Some(Frame::Inline { key, .. }) = frames.last_mut() {
                        *key = keys;
                    }
                    if self.target < end {
                        return Err(Found(value_path(base, &frames)));
                    }
                    continue;
                }
            }
            self.stop_at_target(|| value_path(base, &frames))?;
            match c {
                b'\n' if frames.is_empty() => return Ok(()),
                b'#' => self.skip_comment(),
                b'"' | b'\'' => self.string(),
                b'[' | b'{' | b']' | b'}' | b',' | b'\n' | b'=' => {
                    self.pos += 1;
                    punctuation(c, &mut frames);
                }
                _ => self.skip(is_scalar),
            }
            if self.target < self.pos {
                return Err(Found(value_path(base, &frames)));
            }
        }
    }

    /// A dotted key, bare or quoted parts; its parts and where it ends (before
    /// any space after it).
    fn key(&mut self) -> (Vec<String>, usize) {
        let mut parts = Vec::new();
        let mut end = self.pos;
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(q @ (b'"' | b'\'')) => {
                    let start = self.pos + 1;
                    self.string();
                    let close = self.pos.saturating_sub(1);
                    let stop = if close >= start && self.text.get(close) == Some(&q) {
                        close
                    } else {
                        self.pos
                    };
                    let raw = self.text_between(start, stop);
                    parts.push(if q == b'"' { unescape(&raw) } else { raw });
                }
                Some(c) if is_bare(c) => {
                    let start = self.pos;
                    self.skip(is_bare);
                    parts.push(self.text_between(start, self.pos));
                }
                _ => break,
            }
            end = self.pos;
            self.skip_spaces();
            if self.peek() != Some(b'.') {
                break;
            }
            self.pos += 1;
        }
        (parts, end)
    }

    fn text_between(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(self.text.get(start..end).unwrap_or_default()).into_owned()
    }

    /// Past a string of any kind; a one-line string also ends at its line's
    /// end, unterminated.
    fn string(&mut self) {
        let Some(quote) = self.peek() else { return };
        let basic = quote == b'"';
        let triple = [quote; 3];
        let multi = self.starts_with(&triple);
        self.pos += if multi { 3 } else { 1 };
        while let Some(c) = self.peek() {
            if c == b'\\' && basic {
                self.pos += 2;
            } else if multi && self.starts_with(&triple) {
                self.pos += 3;
                // Up to two quotes may end the content right before the three.
                self.skip(|c| c == quote);
                return;
            } else if !multi && c == quote {
                self.pos += 1;
                return;
            } else if !multi && c == b'\n' {
                return;
            } else {
                self.pos += 1;
            }
        }
    }
}

/// What `[`, `{`, `]`, `}` and `,` do to the open arrays and inline tables.
fn punctuation(c: u8, frames: &mut Vec<Frame>) {
    match c {
        b'[' => frames.push(Frame::Array(0)),
        b'{' => frames.push(Frame::Inline {
            key: Vec::new(),
            want_key: true,
        }),
        b']' | b'}' => {
            frames.pop();
        }
        b',' => match frames.last_mut() {
            Some(Frame::Array(i)) => *i += 1,
            Some(Frame::Inline { key, want_key }) => {
                key.clear();
                *want_key = true;
            }
            None => {}
        },
        _ => {}
    }
}

fn value_path(base: &[Seg], frames: &[Frame]) -> Vec<Seg> {
    let mut path = base.to_vec();
    for frame in frames {
        match frame {
            Frame::Array(i) => path.push(Seg::Index(*i)),
            Frame::Inline { key, .. } => path.extend(key.iter().cloned().map(Seg::Key)),
        }
    }
    path
}

fn is_bare(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || !c.is_ascii()
}

fn is_scalar(c: u8) -> bool {
    !b" \t\r\n,]}#[{=\"'".contains(&c)
}

/// The escapes of a basic string, for quoted keys.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |n: usize, chars: &mut std::str::Chars<'_>| {
            let digits: String = chars.take(n).collect();
            let code = u32::from_str_radix(&digits, 16).ok();
            code.filter(|_| digits.len() == n).and_then(char::from_u32)
        };
        let decoded = match chars.next() {
            Some('b') => Some('\u{8}'),
            Some('t') => Some('\t'),
            Some('n') => Some('\n'),
            Some('f') => Some('\u{c}'),
            Some('r') => Some('\r'),
            Some('e') => Some('\u{1b}'),
            Some('x') => hex(2, &mut chars),
            Some('u') => hex(4, &mut chars),
            Some('U') => hex(8, &mut chars),
            other => other,
        };
        out.extend(decoded);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path at the error toml reports for `text`.
    fn path_of_error(text: &str) -> String {
        let error = text.parse::<toml::Table>().unwrap_err();
        render(&locate(text, error.span().unwrap().start))
    }

    #[test]
    fn keys_tables_and_elements() {
        for (text, path) in [
            (
                "[server]\nlisten = \"a\"\nlisten = \"b\"\n",
                "server.listen",
            ),
            ("x = 1\nx = 2\n", "x"),
            ("[server]\na.b = 1\na . \"b\" = 2\n", "server.a.b"),
            ("[server]\n[server]\n", "server"),
            (
                "[backends.\"sm.flan\"]\nkind = 'x'\n'kind' = 'y'\n",
                "backends.\"sm.flan\".kind",
            ),
            ("[a]\n\"k\\u0065y\" = 1\nkey = 2\n", "a.key"),
            ("[r]\nb = [{ k = 1, k = 2 }]\n", "r.b[0].k"),
            (
                "[r]\nb = [\n  'x', # a 'quote\n  { k = 1, k = 2 },\n]\n",
                "r.b[1].k",
            ),
            (
                "[r]\nb = [[1, 2], [3, {}, { k.j = 1, k.j = 2 }]]\n",
                "r.b[1][2].k.j",
            ),
            ("[r]\nb = [1,\n 2 3]\n", "r.b[1]"),
            ("[[a]]\nk = 1\n[[a]]\nk = 2\nk = 3\n", "a[1].k"),
            ("[[a]]\n[[a]]\n[a.b]\nk = 1\nk = 2\n", "a[1].b.k"),
            (
                "[[a]]\n[[a.b]]\n[[a]]\n[[a.b]]\nk = 1\nk = 2\n",
                "a[1].b[0].k",
            ),
            ("[a]\nk = 1\r\nk = 2\r\n", "a.k"),
        ] {
            assert_eq!(path_of_error(text), path, "{text:?}");
        }
    }

    /// Strings are skipped whole, so what looks like structure inside them
    /// (a header, a quote, a comment) is not taken for it.
    #[test]
    fn strings_hide_their_content() {
        for text in [
            "[a]\ns = \"\"\"\n[b]\nk = \\\" \"\"\n\"\"\"\nk = 1\nk = 2\n",
            "[a]\ns = '''\n[b]\n'''\nk = 1\nk = 2\n",
            "[a]\ns = \"x # y [b]\"\nk = 1\nk = 2\n",
            "[a]\ns = 'c:\\'\nk = 1\nk = 2\n",
        ] {
            assert_eq!(path_of_error(text), "a.k", "{text:?}");
        }
    }

    #[test]
    fn nothing_to_name_at_the_top_level() {
        assert_eq!(path_of_error("# c\n\n= 3\n"), "");
        assert_eq!(locate("", 0), []);
        assert_eq!(locate("[a]\n", 99), [Seg::Key("a".to_owned())]);
    }

    #[test]
    fn escapes_of_quoted_keys() {
        assert_eq!(
            unescape(r#"a\"b\\c\tq\u00e9\U0001F600\x41"#),
            "a\"b\\c\tq\u{e9}\u{1F600}A"
        );
        assert_eq!(unescape("\\u12"), "");
    }
}
