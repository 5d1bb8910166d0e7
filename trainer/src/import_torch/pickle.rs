//! A reader for the part of Python's pickle format that `torch.save` writes (protocol 2, plus the
//! protocol 4 opcodes a `pickle_protocol=4` save adds).
//!
//! Only data is built: dicts, lists, tuples, numbers, strings, and tensors (`_rebuild_tensor_v2`
//! and friends become [`TensorRef`]s that point into the archive's storages). Any other class or
//! function call becomes an opaque [`Value::Object`]; nothing is ever executed. Values are shared
//! through `Rc`, so a memo reference costs a pointer copy, and nesting is capped, so a hostile file
//! can neither exhaust memory through repeated memo references nor overflow the stack.

use std::collections::HashMap;
use std::rc::Rc;

/// A shared pickle value.
pub type Obj = Rc<Value>;

/// Deeper structures are refused (a state dict is 2 levels deep, an optimizer state 5).
const MAX_DEPTH: u32 = 100;

/// Cloning is shallow: children are shared `Rc`s.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Items and nesting depth (1 + the deepest item).
    Tuple(Vec<Obj>, u32),
    List(Vec<Obj>, u32),
    /// Key-value pairs in insertion order (dicts and `OrderedDict`s alike).
    Dict(Vec<(Obj, Obj)>, u32),
    /// A class or function reference (`GLOBAL`), not resolved.
    Global {
        module: String,
        name: String,
    },
    /// A persistent id (`BINPERSID`): torch's storage references.
    Persistent(Obj, u32),
    Tensor(TensorRef),
    /// A call this reader does not interpret (its arguments are dropped), with the `BUILD` state
    /// if any: a pickled config object's attributes land there.
    Object {
        callable: Obj,
        state: Option<Obj>,
        depth: u32,
    },
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(_, d)
            | Value::List(_, d)
            | Value::Dict(_, d)
            | Value::Persistent(_, d) => *d,
            Value::Object { depth, .. } => *depth,
            _ => 0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Dict entries with string keys; `None` if this is not a dict or a key is not a string.
    pub fn as_str_dict(&self) -> Option<Vec<(&str, &Obj)>> {
        match self {
            Value::Dict(items, _) => items.iter().map(|(k, v)| Some((k.as_str()?, v))).collect(),
            _ => None,
        }
    }

    /// A short description for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::Float(f) => format!("float {f}"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Tuple(items, _) => format!("tuple of {}", items.len()),
            Value::List(items, _) => format!("list of {}", items.len()),
            Value::Dict(items, _) => format!("dict of {}", items.len()),
            Value::Global { module, name } => format!("{module}.{name}"),
            Value::Persistent(..) => "persistent id".into(),
            Value::Tensor(t) => format!("tensor {:?}", t.shape),
            Value::Object { callable, .. } => format!("object made by {}", callable.kind()),
        }
    }
}

/// Element type of a torch storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    /// Any other storage class (integers, bools, ...), by name.
    Other(String),
}

impl StorageDtype {
    fn from_class(name: &str) -> Self {
        match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            other => Self::Other(other.into()),
        }
    }

    /// Bytes per element of the float types.
    pub fn size(&self) -> Option<usize> {
        match self {
            Self::F32 => Some(4),
            Self::F64 => Some(8),
            Self::F16 | Self::BF16 => Some(2),
            Self::Other(_) => None,
        }
    }
}

/// A tensor as `torch.save` describes it: a view (offset, shape, strides, in elements) into a
/// storage held in the archive as `<prefix>/data/<storage_key>`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub dtype: StorageDtype,
    pub storage_key: String,
    /// Elements in the storage, as the pickle claims.
    pub storage_len: usize,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Obj>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Obj>,
}

/// Parses a whole pickle (up to STOP) into its top value.
pub fn parse(data: &[u8]) -> Result<Obj, String> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = m.pos;
        let op = m.u8()?;
        match m.step(op) {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => return Err(format!("{e} (opcode 0x{op:02x} at byte {at})")),
        }
    }
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| "the pickle ends early (truncated file?)".to_string())?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| "length out of range".into())
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle ends early (truncated file?)")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn string(&mut self, n: usize) -> Result<Obj, String> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8")?;
        Ok(Rc::new(Value::Str(s.to_string())))
    }

    fn bytes(&mut self, n: usize) -> Result<Obj, String> {
        Ok(Rc::new(Value::Bytes(self.take(n)?.to_vec())))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Rc::new(v));
    }

    fn pop(&mut self) -> Result<Obj, String> {
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err("pop across a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Obj>, String> {
        let start = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(start))
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err("no value above the MARK".into());
        }
        let top = self.stack.last_mut().ok_or("stack underflow")?;
        Ok(Rc::make_mut(top))
    }

    fn memo_get(&self, i: u32) -> Result<Obj, String> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("memo entry {i} was never stored"))
    }

    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let top = self.stack.last().ok_or("stack underflow")?.clone();
        self.memo.insert(i, top);
        Ok(())
    }

    fn step(&mut self, op: u8) -> Result<Option<Obj>, String> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.take(8)?; // FRAME
            }
            b'.' => return self.pop().map(Some), // STOP
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.push(Value::Dict(Vec::new(), 1)),
            b']' => self.push(Value::List(Vec::new(), 1)),
            b')' => self.push(Value::Tuple(Vec::new(), 1)),
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.le()?);
                self.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.le()?);
                self.push(Value::Int(v as i64));
            }
            0x8a | 0x8b => {
                // LONG1 / LONG4: little-endian two's complement
                let n = if op == 0x8a {
                    self.u8()? as usize
                } else {
                    self.len_u32()?
                };
                if n > 8 {
                    return Err(format!("integer of {n} bytes is out of range"));
                }
                let bytes = self.take(n)?;
                let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                buf[..n].copy_from_slice(bytes);
                self.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.le()?);
                self.push(Value::Float(v));
            }
            b'X' => {
                let n = self.len_u32()?;
                let s = self.string(n)?;
                self.stack.push(s);
            }
            0x8c => {
                let n = self.u8()? as usize;
                let s = self.string(n)?;
                self.stack.push(s);
            }
            0x8d => {
                let n = self.len_u64()?;
                let s = self.string(n)?;
                self.stack.push(s);
            }
            b'U' | b'T' => {
                // SHORT_BINSTRING / BINSTRING (Python 2 str): kept as text
                let n = if op == b'U' {
                    self.u8()? as usize
                } else {
                    self.len_u32()?
                };
                let bytes = self.take(n)?;
                let s = String::from_utf8_lossy(bytes).into_owned();
                self.push(Value::Str(s));
            }
            b'C' => {
                let n = self.u8()? as usize;
                let b = self.bytes(n)?;
                self.stack.push(b);
            }
            b'B' => {
                let n = self.len_u32()?;
                let b = self.bytes(n)?;
                self.stack.push(b);
            }
            0x8e => {
                let n = self.len_u64()?;
                let b = self.bytes(n)?;
                self.stack.push(b);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global { module, name });
            }
            0x93 => {
                // STACK_GLOBAL
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(module), Some(name)) => self.push(Value::Global {
                        module: module.into(),
                        name: name.into(),
                    }),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let i = self.u8()? as u32;
                self.memo_put(i)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.le()?);
                self.memo_put(i)?;
            }
            0x94 => {
                let i = self.memo.len() as u32;
                self.memo_put(i)?;
            }
            b'h' => {
                let i = self.u8()? as u32;
                let v = self.memo_get(i)?;
                self.stack.push(v);
            }
            b'j' => {
                let i = u32::from_le_bytes(self.le()?);
                let v = self.memo_get(i)?;
                self.stack.push(v);
            }
            b't' => {
                let items = self.pop_mark()?;
                let d = container_depth(&items)?;
                self.push(Value::Tuple(items, d));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let d = container_depth(&items)?;
                self.push(Value::Tuple(items, d));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![self.pop()?]
                } else {
                    self.pop_mark()?
                };
                match self.top_mut()? {
                    Value::List(list, depth) => {
                        *depth = (*depth).max(container_depth(&items)?);
                        list.extend(items);
                    }
                    other => return Err(format!("APPEND to a {}", other.kind())),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    vec![k, v]
                } else {
                    self.pop_mark()?
                };
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let d = container_depth(&items)?;
                match self.top_mut()? {
                    Value::Dict(dict, depth) => {
                        *depth = (*depth).max(d);
                        // A repeated key is kept twice; readers take the last, as Python would.
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            dict.push((k, v));
                        }
                    }
                    other => return Err(format!("SETITEM on a {}", other.kind())),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let d = container_depth(std::slice::from_ref(&pid))?;
                self.push(Value::Persistent(pid, d));
            }
            b'R' | 0x81 => {
                // REDUCE / NEWOBJ: callable(*args)
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = call(callable, args)?;
                self.push(v);
            }
            b'b' => {
                // BUILD: setstate. Dicts (the state dict's `_metadata`) and tensors ignore it.
                let state = self.pop()?;
                let d = container_depth(std::slice::from_ref(&state))?;
                if let Value::Object {
                    state: slot, depth, ..
                } = self.top_mut()?
                {
                    *depth = (*depth).max(d);
                    *slot = Some(state);
                }
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.stack.last().ok_or("stack underflow")?.clone();
                self.stack.push(top);
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
        Ok(None)
    }
}

fn container_depth(items: &[Obj]) -> Result<u32, String> {
    let d = 1 + items.iter().map(|v| v.depth()).max().unwrap_or(0);
    if d > MAX_DEPTH {
        return Err(format!("values nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(d)
}

/// Interprets the calls `torch.save` uses to rebuild data; everything else stays opaque.
fn call(callable: Obj, args: Obj) -> Result<Value, String> {
    let (module, name) = match &*callable {
        Value::Global { module, name } => (module.as_str(), name.as_str()),
        _ => ("", ""),
    };
    let items: &[Obj] = match &*args {
        Value::Tuple(items, _) => items,
        _ => &[],
    };
    match (module, name) {
        ("collections", "OrderedDict") => {
            // OrderedDict() or OrderedDict([(key, value), ...])
            let mut dict = Vec::new();
            if let Some(first) = items.first() {
                let Value::List(pairs, _) = &**first else {
                    return Err("OrderedDict(...) with an unsupported argument".into());
                };
                for pair in pairs {
                    match &**pair {
                        Value::Tuple(kv, _) if kv.len() == 2 => {
                            dict.push((kv[0].clone(), kv[1].clone()))
                        }
                        _ => return Err("OrderedDict(...) item is not a pair".into()),
                    }
                }
            }
            let d = container_depth(
                &dict
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect::<Vec<_>>(),
            )?;
            Ok(Value::Dict(dict, d))
        }
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            rebuild_tensor(items).map(Value::Tensor)
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            match items.first().map(|v| &**v) {
                Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
                _ => Err(format!("{name} without a tensor")),
            }
        }
        ("torch._utils", "_rebuild_from_type_v2") => {
            // (function, type, args, state): a tensor subclass; rebuild the plain tensor.
            match items {
                [func, _, inner, ..] => call(func.clone(), inner.clone()),
                _ => Err("_rebuild_from_type_v2 needs 4 arguments".into()),
            }
        }
        _ => {
            let depth = container_depth(&[callable.clone(), args.clone()])?;
            Ok(Value::Object {
                callable,
                state: None,
                depth,
            })
        }
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, ...)`
/// where storage is the persistent id `('storage', torch.<Type>Storage, key, location, numel)`.
fn rebuild_tensor(args: &[Obj]) -> Result<TensorRef, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!(
            "_rebuild_tensor_v2 with {} arguments, expected at least 4",
            args.len()
        ));
    };
    let Value::Persistent(pid, _) = &**storage else {
        return Err(format!(
            "tensor storage is a {}, expected a persistent id",
            storage.kind()
        ));
    };
    let Value::Tuple(pid, _) = &**pid else {
        return Err("storage id is not a tuple".into());
    };
    let (dtype, storage_key, storage_len) = match pid.iter().map(|v| &**v).collect::<Vec<_>>()[..] {
        [Value::Str(tag), Value::Global { name, .. }, Value::Str(key), _, Value::Int(numel)]
            if tag == "storage" =>
        {
            let len = usize::try_from(*numel).map_err(|_| "negative storage size")?;
            (StorageDtype::from_class(name), key.clone(), len)
        }
        _ => return Err("storage id is not ('storage', type, key, location, numel)".into()),
    };
    let offset = match &**offset {
        Value::Int(i) => usize::try_from(*i).map_err(|_| "negative storage offset")?,
        other => return Err(format!("storage offset is a {}", other.kind())),
    };
    let dims = |v: &Obj, what: &str| -> Result<Vec<usize>, String> {
        match &**v {
            Value::Tuple(items, _) => items
                .iter()
                .map(|d| match &**d {
                    Value::Int(i) => usize::try_from(*i).map_err(|_| format!("negative {what}")),
                    other => Err(format!("{what} holds a {}", other.kind())),
                })
                .collect(),
            other => Err(format!("tensor {what} is a {}", other.kind())),
        }
    };
    let shape = dims(size, "size")?;
    let stride = dims(stride, "stride")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "tensor size {shape:?} and stride {stride:?} differ in rank"
        ));
    }
    Ok(TensorRef {
        dtype,
        storage_key,
        storage_len,
        offset,
        shape,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_memo_references_stay_cheap_and_deep_nesting_is_refused() {
        // ( ] q0 (h0 h0 t q0 ... : each level references the previous twice
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..60 {
            p.extend_from_slice(&[b'(', b'h', 0, b'h', 0, b't', b'q', 0]);
        }
        p.push(b'.');
        assert!(parse(&p).is_ok());
        let mut deep = vec![0x80, 2];
        deep.extend([b'('; 200]);
        deep.push(b']');
        deep.extend([b't'; 200]);
        deep.push(b'.');
        assert!(parse(&deep).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn truncated_and_unknown_opcodes_are_errors() {
        assert!(parse(&[0x80, 2, b'X', 10, 0, 0, 0, b'a'])
            .unwrap_err()
            .contains("ends early"));
        assert!(parse(&[0x80, 2, 0xff]).unwrap_err().contains("unsupported"));
        assert!(parse(&[0x80, 2, b'.']).unwrap_err().contains("underflow"));
    }
}
