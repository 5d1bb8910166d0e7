//! Training data: datasets that hand out images in [-1, 1], and the shuffling batch loader.

pub mod celeba;
pub mod download;
pub mod folder;
pub mod loader;
pub mod mnist;
pub mod shapes;

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

/// Images of one size with class labels, pixels already in [-1, 1] on request.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per image (C x H x W).
    fn image_len(&self) -> usize;
    /// Writes image `index` as `[C, H, W]` in [-1, 1] into `out` and returns its label, or why
    /// the image cannot be used (the loader skips it and counts it).
    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String>;
}

/// Why a dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Io(#[from] dit_web::PathError),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}: {reason}")]
    Format {
        path: std::path::PathBuf,
        reason: String,
    },
}
