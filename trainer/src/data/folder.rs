//! Your own images: one sub-folder per label, the labels being the folder names (the layout
//! torchvision's `ImageFolder` reads), in any of JPEG, PNG, GIF, BMP or WebP, of any size. Each
//! image is centre-cropped to a square, resized to the run's side (Catmull-Rom) and converted to
//! its channels (grey or RGB); a file that does not decode is skipped and counted by the loader.

use std::path::{Path, PathBuf};

use crate::path_error::PathError;
use image::imageops::FilterType;

use super::dataset::{DataError, Dataset};

/// The dataset name a run on an image folder records (`run.json`, the weight file).
pub const DATASET: &str = "images";

/// The file endings read as images (lower case).
pub const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "bmp", "webp"];

/// The labels and image files of a folder, before any image is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    /// Sub-folder names, sorted: label id = index.
    pub labels: Vec<String>,
    /// (image file, label id), label by label, files sorted within each.
    pub items: Vec<(PathBuf, usize)>,
}

impl Scan {
    /// Lists `root`'s label folders and the images in each (sub-folders of a label folder
    /// included). A folder with fewer than two labels, or a label without an image, is an error.
    pub fn of(root: &Path) -> Result<Self, DataError> {
        let mut labels: Vec<String> = std::fs::read_dir(root)
            .map_err(PathError::at(root))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect();
        labels.sort();
        let layout = "--data must hold one sub-folder of images per label (e.g. cats/, dogs/)";
        match labels.len() {
            0 => {
                return Err(DataError::Missing(format!(
                    "{} has no label folders: {layout}",
                    root.display()
                )))
            }
            1 => {
                return Err(DataError::Missing(format!(
                    "{} has one label folder (`{}`): a model conditioned on labels needs at least two; {layout}",
                    root.display(),
                    labels[0]
                )))
            }
            _ => {}
        }
        let mut items = Vec::new();
        for (id, label) in labels.iter().enumerate() {
            let dir = root.join(label);
            let mut files = Vec::new();
            collect_images(&dir, &mut files)?;
            if files.is_empty() {
                return Err(DataError::Missing(format!(
                    "the label folder {} holds no images ({})",
                    dir.display(),
                    EXTENSIONS.join(", ")
                )));
            }
            files.sort();
            items.extend(files.into_iter().map(|f| (f, id)));
        }
        Ok(Self { labels, items })
    }
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in std::fs::read_dir(dir).map_err(PathError::at(dir))? {
        let path = entry.map_err(PathError::at(dir))?.path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// An image folder as a [`Dataset`] of `side` x `side` images with `channels` (1 or 3).
pub struct ImageFolder {
    scan: Scan,
    side: usize,
    channels: usize,
}

impl ImageFolder {
    pub fn open(root: &Path, side: usize, channels: usize) -> Result<Self, DataError> {
        if !matches!(channels, 1 | 3) {
            return Err(DataError::Unsupported(format!(
                "{channels} channels: an image folder is read as grey (1) or RGB (3)"
            )));
        }
        Ok(Self {
            scan: Scan::of(root)?,
            side,
            channels,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.scan.labels
    }

    pub fn items(&self) -> &[(PathBuf, usize)] {
        &self.scan.items
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.scan.items.len()
    }

    fn image_len(&self) -> usize {
        self.channels * self.side * self.side
    }

    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        let (path, label) = &self.scan.items[index];
        let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (w, h) = (image.width(), image.height());
        let crop = w.min(h);
        let square = image.crop_imm((w - crop) / 2, (h - crop) / 2, crop, crop);
        let side = self.side as u32;
        let resized = if crop == side {
            square
        } else {
            square.resize_exact(side, side, FilterType::CatmullRom)
        };
        let plane = self.side * self.side;
        if self.channels == 1 {
            for (i, p) in resized.to_luma8().pixels().enumerate() {
                out[i] = p.0[0] as f32 / 127.5 - 1.0;
            }
        } else {
            for (i, p) in resized.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = p.0[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        Ok(*label)
    }
}
