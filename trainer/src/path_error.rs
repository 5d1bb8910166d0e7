//! An I/O error together with the path it happened at, so that every message about a file names
//! it. Used as
//! `std::fs::read(path).map_err(PathError::at(path))`.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PathError {
    /// For `map_err`: turns an I/O error into one that names `path`.
    pub fn at(path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_file() {
        let path = Path::new("/nonexistent/run.json");
        let err = std::fs::read(path)
            .map_err(PathError::at(path))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/run.json: "),
            "{err}"
        );
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }
}
