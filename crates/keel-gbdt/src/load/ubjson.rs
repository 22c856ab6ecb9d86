//! A bounded UBJSON reader producing `serde_json::Value`, for XGBoost's `.ubj` models.
//!
//! Supports the types XGBoost writes (null, bool, int8/uint8/int16/int32/int64, float32/64,
//! char, string, high-precision number, arrays and objects, including the optimised `$type#count`
//! containers). Every length is checked against the bytes left, so a forged count cannot
//! allocate more than the input could hold; nesting is bounded.

use crate::error::{invalid, Result};
use serde_json::{Map, Number, Value};

const FMT: &str = "XGBoost UBJSON";
const MAX_NESTING: usize = 64;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, what: &str) -> Result<T> {
        Err(invalid(FMT, format!("{what} at byte {}", self.pos)))
    }

    fn byte(&mut self) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err("unexpected end"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return self.err("truncated value");
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn int_of(&mut self, marker: u8) -> Result<i64> {
        Ok(match marker {
            b'i' => i64::from(self.take(1)?[0] as i8),
            b'U' => i64::from(self.take(1)?[0]),
            b'I' => i64::from(i16::from_be_bytes(
                self.take(2)?.try_into().unwrap_or([0; 2]),
            )),
            b'l' => i64::from(i32::from_be_bytes(
                self.take(4)?.try_into().unwrap_or([0; 4]),
            )),
            b'L' => i64::from_be_bytes(self.take(8)?.try_into().unwrap_or([0; 8])),
            _ => return self.err("expected an integer"),
        })
    }

    fn length(&mut self) -> Result<usize> {
        let m = self.byte()?;
        let n = self.int_of(m)?;
        if n < 0 || n as u64 > (self.buf.len() - self.pos) as u64 {
            return self.err("length exceeds the input");
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.length()?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("invalid UTF-8 in a string"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        let m = self.byte()?;
        self.value_of(m, depth)
    }

    fn float(&self, x: f64) -> Value {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }

    fn value_of(&mut self, marker: u8, depth: usize) -> Result<Value> {
        if depth > MAX_NESTING {
            return self.err("nesting too deep");
        }
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::Number(self.int_of(marker)?.into()),
            b'd' => {
                let x = f32::from_be_bytes(self.take(4)?.try_into().unwrap_or([0; 4]));
                self.float(f64::from(x))
            }
            b'D' => {
                let x = f64::from_be_bytes(self.take(8)?.try_into().unwrap_or([0; 8]));
                self.float(x)
            }
            b'C' => Value::String((self.take(1)?[0] as char).to_string()),
            b'S' => Value::String(self.string()?),
            b'H' => {
                let s = self.string()?;
                match s.parse::<f64>() {
                    Ok(x) => self.float(x),
                    Err(_) => return self.err("bad high-precision number"),
                }
            }
            b'[' => self.array(depth)?,
            b'{' => self.object(depth)?,
            _ => return self.err(&format!("unknown marker 0x{marker:02x}")),
        })
    }

    /// Optional `$type` and `#count` after an opening bracket.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>)> {
        let mut ty = None;
        if self.peek() == Some(b'$') {
            self.pos += 1;
            ty = Some(self.byte()?);
            if self.peek() != Some(b'#') {
                return self.err("typed container without a count");
            }
        }
        let mut count = None;
        if self.peek() == Some(b'#') {
            self.pos += 1;
            count = Some(self.length()?);
        }
        Ok((ty, count))
    }

    fn array(&mut self, depth: usize) -> Result<Value> {
        let (ty, count) = self.container_header()?;
        let mut out = Vec::new();
        match count {
            Some(n) => {
                // Each element takes at least one byte unless typed (then at least its width, or
                // zero for Z/T/F); bound the reservation by what the input can hold.
                out.reserve(n.min(self.buf.len() - self.pos + 1));
                for _ in 0..n {
                    let v = match ty {
                        Some(t) => self.value_of(t, depth + 1)?,
                        None => self.value(depth + 1)?,
                    };
                    out.push(v);
                    if ty.is_some_and(|t| matches!(t, b'Z' | b'T' | b'F'))
                        && out.len() > self.buf.len()
                    {
                        return self.err("zero-width typed array longer than the input");
                    }
                }
            }
            None => loop {
                match self.peek() {
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => out.push(self.value(depth + 1)?),
                    None => return self.err("unterminated array"),
                }
            },
        }
        Ok(Value::Array(out))
    }

    fn object(&mut self, depth: usize) -> Result<Value> {
        let (ty, count) = self.container_header()?;
        let mut out = Map::new();
        let mut entry = |r: &mut Self| -> Result<()> {
            let k = r.string()?;
            let v = match ty {
                Some(t) => r.value_of(t, depth + 1)?,
                None => r.value(depth + 1)?,
            };
            out.insert(k, v);
            Ok(())
        };
        match count {
            Some(n) => {
                for _ in 0..n {
                    entry(self)?;
                }
            }
            None => loop {
                match self.peek() {
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => entry(self)?,
                    None => return self.err("unterminated object"),
                }
            },
        }
        Ok(Value::Object(out))
    }
}

/// Parses one UBJSON document.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return r.err("trailing bytes");
    }
    Ok(v)
}
