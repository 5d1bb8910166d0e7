//! The dataset a run names, opened from the folder the user gives: MNIST's IDX files, CelebA's
//! official layout, or a folder of one's own images with one sub-folder per label. `train` and
//! `lr-find` open their data here (`check-step` and `bench` draw random batches and read none).

use std::path::Path;

use dit_web::DitConfig;

use super::celeba::{CelebA, Partition};
use super::dataset::{DataError, Dataset};
use super::folder::{ImageFolder, DATASET as FOLDER};
use super::mnist::{self, Mnist, Split};

/// Whether `dir` is a folder of your own images (one sub-folder per label, [`folder`]) rather
/// than MNIST's IDX files or CelebA's official layout: it has sub-folders and none of theirs.
pub fn is_image_folder(dir: &std::path::Path) -> bool {
    let images = mnist::TRAIN[0];
    let theirs = [
        "list_attr_celeba.txt".to_string(),
        "img_align_celeba".to_string(),
        images.to_string(),
        format!("{images}.gz"),
    ];
    let has_subfolder = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).any(|e| e.path().is_dir()))
        .unwrap_or(false);
    has_subfolder && !theirs.iter().any(|name| dir.join(name).exists())
}

/// One of the datasets a run can train on, opened.
pub enum Source {
    Mnist(Mnist),
    CelebA(CelebA),
    Folder(ImageFolder),
}

/// Opens the training split of `dataset` (a run's `dataset`: `mnist`, `celeba`, or an image
/// folder) at `dir`, for the network `model`: an image folder is cropped and resized to its side
/// and channels and must hold the run's `labels`. Reads the index (and MNIST's pixels) only, so a
/// wrong folder fails before a backend starts.
pub fn open(
    dir: &Path,
    dataset: &str,
    model: &DitConfig,
    labels: &[String],
) -> Result<Source, DataError> {
    match dataset {
        "mnist" => Ok(Source::Mnist(Mnist::load(dir, Split::Train)?)),
        "celeba" => Ok(Source::CelebA(CelebA::load(dir, Partition::Train)?)),
        FOLDER => {
            let folder = ImageFolder::open(dir, model.input_size, model.in_channels)?;
            if folder.labels() != labels {
                return Err(DataError::Unsupported(format!(
                    "the label folders of {} are {:?}, the run's labels {:?}",
                    dir.display(),
                    folder.labels(),
                    labels
                )));
            }
            Ok(Source::Folder(folder))
        }
        other => Err(DataError::Unsupported(format!(
            "no loader for the dataset `{other}`"
        ))),
    }
}

impl Source {
    fn inner(&self) -> &dyn Dataset {
        match self {
            Self::Mnist(d) => d,
            Self::CelebA(d) => d,
            Self::Folder(d) => d,
        }
    }
}

impl Dataset for Source {
    fn len(&self) -> usize {
        self.inner().len()
    }
    fn image_len(&self) -> usize {
        self.inner().image_len()
    }
    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        self.inner().image_into(index, out)
    }
}
