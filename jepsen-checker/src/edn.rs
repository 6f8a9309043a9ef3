//! A small EDN reader: enough of EDN for Jepsen histories.
//!
//! Supports maps, vectors, lists, sets, keywords, strings (with escapes), integers
//! (an `N` suffix is accepted), `nil`, `true`/`false`, symbols, floats and characters
//! (kept as their text), `;` comments, `#_` discards and tagged literals such as
//! `#jepsen.history.Op{...}` (the tag is dropped, the value kept). Commas are whitespace.

use crate::value::Value;

/// A parse error with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdnError {
    /// 1-based line number.
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for EdnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for EdnError {}

/// Deepest nesting accepted, so hostile input cannot overflow the stack.
const DEPTH_MAX: usize = 256;

/// A cursor over EDN text.
pub struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `src` at line `first_line`.
    pub fn new(src: &'a str, first_line: usize) -> Self {
        Reader { src: src.as_bytes(), pos: 0, line: first_line }
    }

    /// The current 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, EdnError> {
        Err(EdnError { line: self.line, message: message.into() })
    }

    fn skip_ws(&mut self) {
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Reads the next top-level form, or `None` at the end of input. Returns the line the
    /// form started on.
    pub fn next_form(&mut self) -> Result<Option<(usize, Value)>, EdnError> {
        loop {
            self.skip_ws();
            if self.pos >= self.src.len() {
                return Ok(None);
            }
            if self.src[self.pos..].starts_with(b"#_") {
                self.pos += 2;
                self.read(0)?;
                continue;
            }
            let line = self.line;
            return Ok(Some((line, self.read(0)?)));
        }
    }

    fn read_seq(&mut self, close: u8, depth: usize) -> Result<Vec<Value>, EdnError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.src.get(self.pos) {
                None => return self.err(format!("unexpected end of input, expected '{}'", close as char)),
                Some(&c) if c == close => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b')' | b']' | b'}') => {
                    return self
                        .err(format!("unexpected '{}', expected '{}'", self.src[self.pos] as char, close as char))
                }
                _ => {
                    if self.src[self.pos..].starts_with(b"#_") {
                        self.pos += 2;
                        self.read(depth + 1)?;
                        continue;
                    }
                    out.push(self.read(depth + 1)?)
                }
            }
        }
    }

    fn read(&mut self, depth: usize) -> Result<Value, EdnError> {
        if depth > DEPTH_MAX {
            return self.err("nesting too deep");
        }
        self.skip_ws();
        let Some(&c) = self.src.get(self.pos) else {
            return self.err("unexpected end of input");
        };
        match c {
            b'[' | b'(' => {
                self.pos += 1;
                Ok(Value::Vec(self.read_seq(if c == b'[' { b']' } else { b')' }, depth)?))
            }
            b'{' => {
                self.pos += 1;
                let items = self.read_seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return self.err("map literal has an odd number of forms");
                }
                let mut it = items.into_iter();
                let mut m = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Ok(Value::Map(m))
            }
            b'#' => match self.src.get(self.pos + 1) {
                Some(b'{') => {
                    self.pos += 2;
                    Ok(Value::Set(self.read_seq(b'}', depth)?))
                }
                Some(b'_') => {
                    self.pos += 2;
                    self.read(depth + 1)?;
                    self.read(depth)
                }
                Some(_) => {
                    // Tagged literal: skip the tag symbol, keep the value.
                    self.pos += 1;
                    let tag = self.token();
                    if tag.is_empty() {
                        return self.err("bad '#' dispatch");
                    }
                    self.read(depth + 1)
                }
                None => self.err("unexpected end of input after '#'"),
            },
            b'"' => self.read_string(),
            b':' => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return self.err("empty keyword");
                }
                Ok(Value::Keyword(t.to_string()))
            }
            b'\\' => {
                self.pos += 1;
                let start = self.pos;
                self.pos += 1;
                let rest = self.token();
                let s =
                    format!("\\{}{}", String::from_utf8_lossy(&self.src[start..(start + 1).min(self.src.len())]), rest);
                Ok(Value::Symbol(s))
            }
            b')' | b']' | b'}' => self.err(format!("unexpected '{}'", c as char)),
            _ => {
                let t = self.token();
                if t.is_empty() {
                    return self.err(format!("unexpected character '{}'", c as char));
                }
                Ok(atom(t))
            }
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' | b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';' => break,
                _ => self.pos += 1,
            }
        }
        // Token boundaries are ASCII, so this slice is valid UTF-8.
        std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("")
    }

    fn read_string(&mut self) -> Result<Value, EdnError> {
        let start_line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(EdnError { line: start_line, message: "unterminated string".into() });
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else {
                        return self.err("unterminated string escape");
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'u' => {
                            let hex = self.src.get(self.pos..self.pos + 4);
                            let ch = hex
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            let Some(ch) = ch else {
                                return self.err("bad \\u escape in string");
                            };
                            self.pos += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => return self.err(format!("unknown string escape '\\{}'", other as char)),
                    }
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c)
                }
                _ => out.push(c),
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(Value::Str(s)),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }
}

fn atom(t: &str) -> Value {
    match t {
        "nil" => return Value::Nil,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = t.strip_suffix('N').unwrap_or(t);
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if let Ok(i) = digits.parse::<i64>() {
        return Value::Int(i);
    }
    Value::Symbol(t.to_string())
}

/// Parses every top-level form in `src`, each with its starting line.
pub fn parse_all(src: &str) -> Result<Vec<(usize, Value)>, EdnError> {
    let mut r = Reader::new(src, 1);
    let mut out = Vec::new();
    while let Some(f) = r.next_form()? {
        out.push(f);
    }
    Ok(out)
}

/// Parses exactly one form.
pub fn parse_one(src: &str) -> Result<Value, EdnError> {
    let mut r = Reader::new(src, 1);
    let Some((_, v)) = r.next_form()? else {
        return Err(EdnError { line: 1, message: "expected a value, found nothing".into() });
    };
    if let Some((line, _)) = r.next_form()? {
        return Err(EdnError { line, message: "trailing data after value".into() });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jepsen_op() {
        let v =
            parse_one(r#"{:process 1, :type :ok, :f :txn, :value [[:append 9 2] [:r 8 nil]] :s "a\"b" :set #{1 2}}"#)
                .unwrap();
        assert_eq!(v.get("process"), Some(&Value::Int(1)));
        assert_eq!(v.get("type"), Some(&Value::Keyword("ok".into())));
        assert_eq!(v.get("s"), Some(&Value::Str("a\"b".into())));
        assert_eq!(v.get("set"), Some(&Value::Set(vec![Value::Int(1), Value::Int(2)])));
    }

    #[test]
    fn tagged_and_comments() {
        let all = parse_all("; hi\n#jepsen.history.Op{:index 3}\n#_ {:x 1}\n(1 2)").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, 2);
        assert_eq!(all[1].1, Value::Vec(vec![Value::Int(1), Value::Int(2)]));
    }

    #[test]
    fn errors_have_lines() {
        let e = parse_all("{:a 1}\n{:b [1 2}\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_all("{:a 1}\n\n\"open").unwrap_err();
        assert_eq!(e.line, 3);
    }
}
