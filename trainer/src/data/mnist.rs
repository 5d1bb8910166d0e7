//! MNIST from the four standard IDX files, gzipped or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::path_error::PathError;

use super::dataset::{DataError, Dataset};

/// The file names of a split, without `.gz`.
pub const TRAIN: [&str; 2] = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"];
pub const TEST: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// A split of MNIST in memory: 28x28 grey images as bytes, labels 0-9.
pub struct Mnist {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Mnist {
    /// Reads `<dir>/<name>` or `<dir>/<name>.gz` for the split's images and labels.
    pub fn load(dir: &Path, split: Split) -> Result<Self, DataError> {
        let [images, labels] = match split {
            Split::Train => TRAIN,
            Split::Test => TEST,
        };
        let (image_path, image_bytes) = read_maybe_gz(dir, images)?;
        let (label_path, label_bytes) = read_maybe_gz(dir, labels)?;
        let (dims, pixels) = parse_idx(&image_path, &image_bytes, 0x0803, 3)?;
        let (label_dims, labels) = parse_idx(&label_path, &label_bytes, 0x0801, 1)?;
        if dims[0] != label_dims[0] {
            return Err(DataError::Format {
                path: label_path,
                reason: format!("{} labels for {} images", label_dims[0], dims[0]),
            });
        }
        if let Some(bad) = labels.iter().find(|&&l| l > 9) {
            return Err(DataError::Format {
                path: label_path,
                reason: format!("label {bad} is not a digit"),
            });
        }
        Ok(Self {
            images: pixels.to_vec(),
            labels: labels.to_vec(),
            rows: dims[1],
            cols: dims[2],
        })
    }
}

impl Dataset for Mnist {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        let n = self.image_len();
        for (o, &p) in out.iter_mut().zip(&self.images[index * n..(index + 1) * n]) {
            *o = p as f32 / 127.5 - 1.0;
        }
        Ok(self.labels[index] as usize)
    }
}

fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let io = |path: &Path| PathError::at(path);
    if gz.exists() {
        let file = std::fs::File::open(&gz).map_err(io(&gz))?;
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(io(&gz))?;
        Ok((gz, bytes))
    } else if raw.exists() {
        Ok((raw.clone(), std::fs::read(&raw).map_err(io(&raw))?))
    } else {
        Err(DataError::Missing(format!(
            "MNIST file {name}(.gz) not found in {}. Put the four standard files there \
             (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, \
             t10k-labels-idx1-ubyte.gz), or run `trainer download mnist --data {}` on a machine \
             that is online.",
            dir.display(),
            dir.display()
        )))
    }
}

/// Parses an IDX file: big-endian magic (0x0000 + type 0x08 (u8) + rank), the dims, then data.
fn parse_idx<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    rank: usize,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let word = |i: usize| -> Result<u32, DataError> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("file ends inside the header".into()))
    };
    let found = word(0)?;
    if found != magic {
        return Err(bad(format!(
            "magic number {found:#010x}, expected {magic:#010x}"
        )));
    }
    let dims: Vec<usize> = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Result<_, _>>()?;
    let start = 4 * (rank + 1);
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("dimensions overflow".into()))?;
    let data = bytes.get(start..start + len).ok_or_else(|| {
        bad(format!(
            "expected {len} data bytes for dims {dims:?}, found {}",
            bytes.len().saturating_sub(start)
        ))
    })?;
    Ok((dims, data))
}
