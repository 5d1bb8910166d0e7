//! What the trainer asks of a dataset, and why one could not be read.

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
    Io(#[from] crate::path_error::PathError),
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

/// A borrowed dataset is one too (tests and benches lend theirs to a [`crate::train::Job`]).
impl<D: Dataset + ?Sized> Dataset for &D {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn image_len(&self) -> usize {
        (**self).image_len()
    }
    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        (**self).image_into(index, out)
    }
}
