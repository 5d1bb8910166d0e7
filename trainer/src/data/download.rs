//! `trainer download mnist`: fetches the four IDX files from a mirror and checks each one's
//! SHA-256 (of the decompressed bytes, so any mirror's gzip of the same data passes).

use std::io::Read;
use std::path::Path;

use crate::path_error::PathError;

use sha2::{Digest, Sha256};

use super::dataset::DataError;

/// A commonly used MNIST mirror (the one torchvision tries first).
pub const DEFAULT_MIRROR: &str = "https://ossci-datasets.s3.amazonaws.com/mnist";

/// (file name without `.gz`, SHA-256 of its decompressed content).
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

const MAX_BYTES: u64 = 64 << 20;

/// What happened to each file.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Already present with the right content.
    Present,
    Downloaded,
}

/// `trainer download`: the files of dataset `name` (only `mnist` can be fetched automatically).
pub fn download_dataset(
    name: &str,
    mirror: &str,
    dir: &Path,
) -> Result<Vec<(String, Fetched)>, DataError> {
    match name {
        "mnist" => download(mirror, dir, &MNIST_FILES),
        _ => Err(DataError::Unsupported(format!(
            "`{name}` cannot be downloaded automatically; only `mnist` can (CelebA: get \
             img_align_celeba, list_attr_celeba.txt and list_eval_partition.txt from its \
             official page)"
        ))),
    }
}

/// Downloads every file of `files` that `dir` lacks (or holds with the wrong content) from
/// `mirror` as `<name>.gz`, verifies it, and writes it atomically. Nothing unverified is kept.
pub fn download(
    mirror: &str,
    dir: &Path,
    files: &[(&str, &str)],
) -> Result<Vec<(String, Fetched)>, DataError> {
    std::fs::create_dir_all(dir).map_err(PathError::at(dir))?;
    let mut report = Vec::new();
    for &(name, sha) in files {
        let path = dir.join(format!("{name}.gz"));
        if let Ok(existing) = std::fs::read(&path) {
            if gunzip_sha256(&existing).is_some_and(|h| h == sha) {
                report.push((name.to_string(), Fetched::Present));
                continue;
            }
        }
        let url = format!("{}/{name}.gz", mirror.trim_end_matches('/'));
        let offline = |e: String| {
            DataError::Missing(format!(
                "could not download {url}: {e}. If this machine is offline, copy the four MNIST files \
                 ({}) into {} by other means.",
                files.iter().map(|f| format!("{}.gz", f.0)).collect::<Vec<_>>().join(", "),
                dir.display()
            ))
        };
        let mut response = ureq::get(&url).call().map_err(|e| offline(e.to_string()))?;
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BYTES)
            .read_to_vec()
            .map_err(|e| offline(e.to_string()))?;
        match gunzip_sha256(&body) {
            Some(h) if h == sha => {}
            found => {
                return Err(DataError::Format {
                    path: path.clone(),
                    reason: format!(
                        "{url} does not hold the expected file (SHA-256 of the content {}, expected {sha}); nothing was written",
                        found.unwrap_or_else(|| "unreadable: not gzip".into())
                    ),
                })
            }
        }
        crate::atomic::write(&path, &body).map_err(PathError::at(&path))?;
        report.push((name.to_string(), Fetched::Downloaded));
    }
    Ok(report)
}

/// SHA-256 (hex) of the decompressed content, `None` if it is not valid gzip.
fn gunzip_sha256(gz: &[u8]) -> Option<String> {
    let mut content = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut content)
        .ok()?;
    Some(
        Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
