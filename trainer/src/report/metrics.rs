//! One JSON object per optimizer step, appended to `metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricsRow {
    /// Optimizer steps done after this one.
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    pub images_per_sec: f64,
}

pub struct Metrics {
    file: File,
}

impl Metrics {
    /// Opens for appending. Rows past the last checkpoint (from a run killed after it) are left
    /// in place; readers keep the last row of each step.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    pub fn append(&mut self, row: &MetricsRow) -> io::Result<()> {
        let mut line = serde_json::to_vec(row).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// Reads a metrics file, keeping the last row written for each step (a resumed run rewrites the
/// steps after its checkpoint), in step order.
pub fn read(path: &Path) -> io::Result<Vec<MetricsRow>> {
    let mut rows = std::collections::BTreeMap::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if let Ok(row) = serde_json::from_str::<MetricsRow>(&line) {
            rows.insert(row.step, row);
        }
    }
    Ok(rows.into_values().collect())
}
