//! Training data: datasets that hand out images in [-1, 1], the one function that opens the
//! dataset a run names, and the shuffling batch loader.

pub mod celeba;
mod dataset;
pub mod download;
pub mod folder;
pub mod loader;
pub mod mnist;
pub mod shapes;
mod source;

pub use dataset::{DataError, Dataset};
pub use source::{is_image_folder, open, Source};
