//! The `torch.save` archive: a zip file whose `<name>/data.pkl` describes the saved dict and whose
//! `<name>/data/<key>` entries hold the tensors' storages. Tensors are read as f32, honouring
//! offsets and strides; every size the pickle claims is checked against the entry's real size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::ops::Range;
use std::path::Path;

use crate::path_error::PathError;

use super::error::ImportError;
use super::model_args::ModelArgs;
use super::pickle::{self, Obj, StorageDtype, TensorRef, Value};

/// The largest `data.pkl` read (a state dict's pickle is a few hundred KB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// A state dict: tensor name -> where its data lives.
pub type StateDict = BTreeMap<String, TensorRef>;

/// What a checkpoint is read from: a file, bytes, or a remote file fetched in byte ranges.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Key prefixes that wrap a whole state dict without changing it: `torch.compile`'s module
/// (`_orig_mod.`, how the reference saves its compiled model) and DDP's (`module.`).
const WRAPPER_PREFIXES: [&str; 2] = ["_orig_mod.", "module."];

/// An opened `torch.save` archive: its top-level entries, and access to tensor data.
pub struct Checkpoint {
    archive: RefCell<zip::ZipArchive<Box<dyn ReadSeek>>>,
    /// The archive's folder (`<name>/`), in front of `data.pkl` and `data/<storage>`.
    prefix: String,
    /// Size of the whole file: no entry can honestly be larger.
    file_len: u64,
    top: Vec<(String, Obj)>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = std::fs::File::open(path).map_err(PathError::at(path))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        Self::from_reader(Box::new(std::io::BufReader::new(file)), file_len)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ImportError> {
        let file_len = bytes.len() as u64;
        Self::from_reader(Box::new(std::io::Cursor::new(bytes)), file_len)
    }

    /// Reads the archive's directory and its `data.pkl` from `reader` (`file_len` bytes long);
    /// tensor data is read when asked for.
    pub fn from_reader(reader: Box<dyn ReadSeek>, file_len: u64) -> Result<Self, ImportError> {
        let not = |m: String| ImportError::NotACheckpoint(m);
        let mut archive =
            zip::ZipArchive::new(reader).map_err(|e| not(format!("not a zip archive ({e})")))?;
        let pickles: Vec<String> = archive
            .file_names()
            .filter(|n| {
                *n == "data.pkl" || (n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            })
            .map(String::from)
            .collect();
        let [pkl] = &pickles[..] else {
            return Err(not(format!(
                "expected one <name>/data.pkl in the archive, found {}",
                pickles.len()
            )));
        };
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Ok(mut f) = archive.by_name(&format!("{prefix}byteorder")) {
            let mut order = String::new();
            f.by_ref()
                .take(16)
                .read_to_string(&mut order)
                .map_err(|e| not(format!("byteorder: {e}")))?;
            if order.trim() != "little" {
                return Err(not(format!(
                    "byte order `{}`; only little-endian checkpoints are read",
                    order.trim()
                )));
            }
        }
        let bytes = {
            let mut f = archive
                .by_name(pkl)
                .map_err(|e| not(format!("{pkl}: {e}")))?;
            if f.size() > MAX_PICKLE_BYTES {
                return Err(not(format!("{pkl} is {} bytes, too large", f.size())));
            }
            let mut bytes = Vec::with_capacity(f.size() as usize);
            f.read_to_end(&mut bytes)
                .map_err(|e| not(format!("{pkl}: {e}")))?;
            bytes
        };
        let value = pickle::parse(&bytes).map_err(ImportError::Pickle)?;
        let top = value
            .as_str_dict()
            .ok_or_else(|| {
                not(format!(
                    "it holds a {}, expected a dict (model_state, ema_state, ...)",
                    value.kind()
                ))
            })?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Ok(Self {
            archive: RefCell::new(archive),
            prefix,
            file_len,
            top,
        })
    }

    /// The top-level keys, in file order.
    pub fn keys(&self) -> Vec<String> {
        self.top.iter().map(|(k, _)| k.clone()).collect()
    }

    fn get(&self, key: &str) -> Option<&Obj> {
        // A repeated key: the last one wins, as in Python.
        self.top
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The state dict under `key` (`ema_state`, `model_state`), its names without the
    /// [`WRAPPER_PREFIXES`] that every one of them carries.
    pub fn state_dict(&self, key: &str) -> Result<StateDict, ImportError> {
        let value = self.get(key).ok_or_else(|| ImportError::MissingEntry {
            key: key.into(),
            found: self.keys(),
        })?;
        let bad = |reason: String| ImportError::NotAStateDict {
            key: key.into(),
            reason,
        };
        let entries = value
            .as_str_dict()
            .ok_or_else(|| bad(format!("it is a {}", value.kind())))?;
        let mut state: StateDict = entries
            .into_iter()
            .map(|(name, v)| match &**v {
                Value::Tensor(t) => Ok((name.to_string(), t.clone())),
                other => Err(bad(format!("`{name}` is a {}, not a tensor", other.kind()))),
            })
            .collect::<Result<_, _>>()?;
        // Wrappers nest (DDP around a compiled model): peel while one prefixes every name.
        while let Some(prefix) = WRAPPER_PREFIXES
            .into_iter()
            .find(|p| !state.is_empty() && state.keys().all(|k| k.starts_with(p)))
        {
            state = state
                .into_iter()
                .map(|(k, t)| (k[prefix.len()..].to_string(), t))
                .collect();
        }
        Ok(state)
    }

    /// Where in the file the storages behind `state` lie: byte spans, each covering a run of
    /// archive entries that follow one another (a state dict's storages are written together,
    /// so a whole state is usually one span). Reads only the local headers at the spans' ends.
    pub fn storage_spans(&self, state: &StateDict) -> Result<Vec<Range<u64>>, ImportError> {
        let mut archive = self.archive.borrow_mut();
        let mut indices: Vec<usize> = Vec::new();
        for t in state.values() {
            let entry = format!("{}data/{}", self.prefix, t.storage_key);
            let index = archive
                .index_for_name(&entry)
                .ok_or_else(|| ImportError::BadTensor {
                    name: t.storage_key.clone(),
                    reason: format!("storage `{entry}` is not in the archive"),
                })?;
            indices.push(index);
        }
        indices.sort_unstable();
        indices.dedup();
        let mut spans = Vec::new();
        let mut at = 0;
        while at < indices.len() {
            let mut end = at;
            while end + 1 < indices.len() && indices[end + 1] == indices[end] + 1 {
                end += 1;
            }
            let bad = |e: zip::result::ZipError| ImportError::NotACheckpoint(e.to_string());
            let start = archive
                .by_index_raw(indices[at])
                .map_err(bad)?
                .header_start();
            let last = archive.by_index_raw(indices[end]).map_err(bad)?;
            let stop = last.data_start().unwrap_or(last.header_start()) + last.compressed_size();
            spans.push(start..stop.max(start));
            at = end + 1;
        }
        Ok(spans)
    }

    /// `model_args` as a dict (a pickled config object contributes its attributes).
    pub fn model_args(&self) -> Result<Option<ModelArgs>, ImportError> {
        let Some(value) = self.get("model_args") else {
            return Ok(None);
        };
        let dict = match &**value {
            Value::Object {
                state: Some(state), ..
            } => state.clone(),
            _ => value.clone(),
        };
        let entries = dict.as_str_dict().ok_or_else(|| {
            ImportError::ModelArgs(format!("expected a dict, found a {}", value.kind()))
        })?;
        Ok(Some(ModelArgs(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )))
    }

    /// The `step` entry, if it is a non-negative integer.
    pub fn step(&self) -> Option<u64> {
        match self.get("step").map(|v| &**v) {
            Some(Value::Int(i)) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// A tensor's values as f32, row-major.
    pub fn read_f32(&self, name: &str, t: &TensorRef) -> Result<Vec<f32>, ImportError> {
        let bad = |reason: String| ImportError::BadTensor {
            name: name.into(),
            reason,
        };
        let size = t
            .dtype
            .size()
            .ok_or_else(|| bad(format!("dtype {:?} is not a float type", t.dtype)))?;
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("size overflows".into()))?;
        if numel > t.storage_len {
            return Err(bad(format!(
                "its {numel} elements overlap in a storage of {}",
                t.storage_len
            )));
        }
        if numel > 0 {
            let last = t
                .shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&n, &s)| {
                    a.checked_add((n - 1).checked_mul(s)?)
                })
                .ok_or_else(|| bad("strides overflow".into()))?;
            if last >= t.storage_len {
                return Err(bad(format!(
                    "its view reaches element {last} of a storage of {} elements",
                    t.storage_len
                )));
            }
        }
        let entry = format!("{}data/{}", self.prefix, t.storage_key);
        let needed = t
            .storage_len
            .checked_mul(size)
            .ok_or_else(|| bad("storage size overflows".into()))?;
        let mut archive = self.archive.borrow_mut();
        let mut f = archive
            .by_name(&entry)
            .map_err(|e| bad(format!("storage `{entry}` cannot be read: {e}")))?;
        if f.size() != needed as u64 || f.size() > self.file_len {
            return Err(bad(format!(
                "storage `{entry}` holds {} bytes, the pickle says {} elements of {size} bytes",
                f.size(),
                t.storage_len
            )));
        }
        // Read to the end so that the zip reader verifies the entry's CRC.
        let mut bytes = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut bytes)
            .map_err(|e| bad(format!("storage `{entry}`: {e}")))?;
        if bytes.len() < needed {
            return Err(bad(format!("storage `{entry}` ends early")));
        }
        let element = |i: usize| -> f32 {
            let b = &bytes[i * size..(i + 1) * size];
            match t.dtype {
                StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                StorageDtype::F64 => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                StorageDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::Other(_) => unreachable!("checked above"),
            }
        };
        // Walk the view in row-major order (contiguous tensors are the common case).
        let rank = t.shape.len();
        let mut out = Vec::with_capacity(numel);
        let mut index = vec![0usize; rank];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            out.push(element(at));
            for axis in (0..rank).rev() {
                index[axis] += 1;
                if index[axis] < t.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(out)
    }
}
