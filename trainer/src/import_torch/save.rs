//! Writes checkpoints in `torch.save`'s layout without PyTorch: a protocol-4 pickle of plain data
//! and tensors, in a zip of stored entries. The import tests build their hostile and strided
//! files with [`Pickle`], and `examples/reference_checkpoint.rs` writes a reference-layout
//! checkpoint of a whole preset (what the site's offline test serves in place of the published
//! one) with [`save`]. Nothing here reads; the reader is [`super::pickle`].

use std::collections::BTreeMap;
use std::io::Write;

/// A pickle writer for the opcodes `torch.save(..., pickle_protocol=4)` emits: enough to write a
/// checkpoint the way PyTorch does without PyTorch.
#[derive(Default)]
pub struct Pickle(pub Vec<u8>);

impl Pickle {
    pub fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(op);
        self
    }
    /// SHORT_BINUNICODE + MEMOIZE, as protocol 4 writes every string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        let len = u8::try_from(s.len()).expect("SHORT_BINUNICODE holds at most 255 bytes");
        self.op(0x8c).op(len);
        self.0.extend_from_slice(s.as_bytes());
        self.op(0x94)
    }
    /// BININT
    pub fn int(&mut self, i: i32) -> &mut Self {
        self.op(b'J');
        self.0.extend_from_slice(&i.to_le_bytes());
        self
    }
    /// BINFLOAT (big-endian, as pickle has it)
    pub fn float(&mut self, f: f64) -> &mut Self {
        self.op(b'G');
        self.0.extend_from_slice(&f.to_be_bytes());
        self
    }
    /// STACK_GLOBAL + MEMOIZE
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.str(module).str(name).op(0x93).op(0x94)
    }
    pub fn tuple_of_ints(&mut self, items: &[usize]) -> &mut Self {
        self.op(b'(');
        for &i in items {
            self.int(i as i32);
        }
        self.op(b't').op(0x94)
    }
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`,
    /// the storage a persistent id `('storage', FloatStorage, key, 'cpu', numel)`.
    pub fn tensor(
        &mut self,
        key: &str,
        numel: usize,
        offset: usize,
        shape: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(')
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu");
        self.int(numel as i32).op(b't').op(0x94).op(b'Q');
        self.int(offset as i32)
            .tuple_of_ints(shape)
            .tuple_of_ints(stride)
            .op(0x89);
        self.global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(0x94);
        self.op(b't').op(0x94).op(b'R').op(0x94)
    }
    /// PROTO 4 and one FRAME around everything, as the pickler writes a small file.
    pub fn finish(&mut self) -> Vec<u8> {
        self.op(b'.');
        let mut out = vec![0x80, 4, 0x95];
        out.extend_from_slice(&(self.0.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.0);
        out
    }
}

/// Contiguous f32 tensors by name: `(shape, values)`.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A checkpoint as the reference's `torch.save` writes it: a dict of the state dicts in
/// `states` (each tensor in its own storage, in order: the archive lays them out state after
/// state, as PyTorch does), `model_args` of whole numbers and floats, and `step`.
pub fn save(states: &[(&str, &Tensors)], model_args: &[(&str, f64)], step: u32) -> Vec<u8> {
    let mut p = Pickle::default();
    let mut storages: Vec<(String, &[f32])> = Vec::new();
    p.op(b'}').op(0x94).op(b'(');
    for (key, tensors) in states {
        p.str(key);
        p.global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(0x94)
            .op(b'(');
        for (name, (shape, values)) in tensors.iter() {
            let mut stride = vec![1; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * shape[i + 1];
            }
            let storage = storages.len().to_string();
            p.str(name)
                .tensor(&storage, values.len(), 0, shape, &stride);
            storages.push((storage, values));
        }
        p.op(b'u');
    }
    p.str("model_args").op(b'}').op(0x94).op(b'(');
    for (key, value) in model_args {
        p.str(key);
        if value.fract() == 0.0 && value.abs() < f64::from(i32::MAX) {
            p.int(*value as i32);
        } else {
            p.float(*value);
        }
    }
    p.op(b'u');
    p.str("step").int(step as i32).op(b'u');
    let pickle = p.finish();

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut put = |name: String, bytes: &[u8]| {
        zip.start_file(name, stored).expect("in memory");
        zip.write_all(bytes).expect("in memory");
    };
    put("archive/data.pkl".into(), &pickle);
    put("archive/byteorder".into(), b"little");
    for (key, values) in storages {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        put(format!("archive/data/{key}"), &bytes);
    }
    put("archive/version".into(), b"3\n");
    zip.finish().expect("in memory").into_inner()
}
