//! The reference implementation's published checkpoints, fetched and converted in one step:
//! `trainer download celeba-reference`. The checkpoint is read through [`RemoteFile`], so only
//! its directory, its pickle and the EMA tensors are downloaded where the server serves byte
//! ranges, and the file's size and layout are checked against the preset before the tensors are
//! fetched.

use std::io::BufReader;
use std::path::Path;

use dit_web::config::Preset;

use super::archive::Checkpoint;
use super::convert::{convert, Imported};
use super::error::ImportError;
use super::options::ImportOptions;
use super::remote::{OnTransfer, RemoteError, RemoteFile};

/// A checkpoint the reference published, and what the page needs to know about it.
pub struct Reference {
    /// What `trainer download` calls it.
    pub name: &'static str,
    pub url: &'static str,
    pub preset: fn() -> Preset,
    /// Where it comes from and under what terms, for its model card.
    pub source: &'static str,
    pub licence: &'static str,
}

/// The reference's CelebA model (its README: 100,000 steps of 112 images); its download script
/// fetches this URL.
pub const CELEBA: Reference = Reference {
    name: "celeba-reference",
    url: "https://huggingface.co/vachanvy/Diffusion_Transformer/resolve/main/celeba/ckpt.pt",
    preset: Preset::celeba,
    source: "the reference PyTorch DiT (github.com/VachanVY/diffusion-transformer)",
    licence: "the reference's repository states no licence; the weights are fetched from where it publishes them, not redistributed by dit-web",
};

/// Every reference checkpoint `trainer download` knows.
pub const REFERENCES: [&Reference; 1] = [&CELEBA];

/// A converted download.
pub struct Fetched {
    pub imported: Imported,
    /// The checkpoint's size, the bytes this run downloaded, and the bytes the cache holds.
    pub file_len: u64,
    pub downloaded: u64,
    pub cached: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{url} is not the expected checkpoint: {reason}")]
    NotTheFile { url: String, reason: String },
    #[error("{url}: {source}")]
    Import {
        url: String,
        #[source]
        source: ImportError,
    },
}

/// Opens `url` through the cache in `cache`, checks it against `preset` (when given) and converts
/// its EMA weights. `on_transfer` sees the download's progress.
pub fn fetch(
    url: &str,
    cache: &Path,
    preset: Option<Preset>,
    on_transfer: OnTransfer,
) -> Result<Fetched, FetchError> {
    let remote = RemoteFile::open(url, cache, on_transfer)?;
    let not_the_file = |reason: String| FetchError::NotTheFile {
        url: url.into(),
        reason,
    };
    if let Some(p) = &preset {
        // Two bytes a parameter (f16/bf16) is the least a state dict of this network can take.
        let least = p.model.num_params() * 2;
        if u128::from(remote.len()) < least {
            remote.forget();
            return Err(not_the_file(format!(
                "it is {} bytes, and the `{}` preset's weights alone take at least {least}",
                remote.len(),
                p.name
            )));
        }
    }
    let opened = (|| {
        let reader = BufReader::with_capacity(1 << 16, remote.reader());
        let ckpt = Checkpoint::from_reader(Box::new(reader), remote.len())?;
        let spans = ckpt.storage_spans(&ckpt.state_dict("ema_state")?)?;
        Ok((ckpt, spans))
    })();
    let (ckpt, spans) = opened.map_err(|e| failed(&remote, url, e))?;
    remote.prefetch(&spans, "the EMA weights")?;
    let options = ImportOptions {
        preset,
        ..Default::default()
    };
    let imported = convert(&ckpt, &options).map_err(|e| failed(&remote, url, e))?;
    Ok(Fetched {
        imported,
        file_len: remote.len(),
        downloaded: remote.fetched(),
        cached: remote.cached(),
    })
}

/// Why reading the checkpoint failed: the network (what arrived stays cached, and the next run
/// goes on from it), or the file is not a checkpoint of this network (nothing of it is kept).
fn failed(remote: &RemoteFile, url: &str, e: ImportError) -> FetchError {
    if let Some(network) = remote.take_failure() {
        return FetchError::Remote(network);
    }
    remote.forget();
    FetchError::Import {
        url: url.into(),
        source: e,
    }
}

/// The model card written beside the converted file (`www/weights/<name>.card.json`): what the
/// weights are and where they came from, and the settings the page starts them with. The start
/// on the CPU fallback is lighter: one image, fewer steps (a step of this network there takes
/// seconds per image).
pub fn card(reference: &Reference, url: &str, step: u64) -> serde_json::Value {
    serde_json::json!({
        "sampler": "dpm++",
        "steps": 20,
        "guidance": 1.5,
        "cpu_start": { "steps": 10, "images": 1 },
        "trained": format!(
            "the reference PyTorch DiT's published EMA weights (saved at step {}; its README: 100,000 steps of 112 images)",
            fmt_thousands(step)
        ),
        "source": if url == reference.url {
            format!("{}: {url}", reference.source)
        } else {
            format!("fetched from {url}; {} publishes them at {}", reference.source, reference.url)
        },
        "licence": reference.licence,
        "quality": "not measured by dit-web: the reference's README shows its own samples",
        "speed": {
            "cpu": "about 2.9 s per image per step (without guidance; twice that with it) on the CPU fallback (wasm, one thread, 2 CPU cores)",
            "webgpu": "about 19 s per image per step on a software WebGPU adapter (2 CPU cores); not yet measured on a hardware GPU in a browser"
        },
        "details": "about.html#celeba"
    })
}

fn fmt_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::fmt_thousands(99_999), "99,999");
        assert_eq!(super::fmt_thousands(100), "100");
        assert_eq!(super::fmt_thousands(1_234_567), "1,234,567");
    }
}
