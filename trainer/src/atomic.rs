//! Files and folders that appear whole or not at all.
//!
//! Everything the tools write (weight files, checkpoints, PNGs, plots, downloads) is made under a
//! temporary name in the destination's folder and renamed over it at the end. A rename within one
//! file system replaces the destination in one step, so a killed process leaves the old version or
//! the new one, never half of one.

use std::io;
use std::path::{Path, PathBuf};

/// The temporary name [`create`] uses for `path`: in the same folder (so the rename stays on one
/// file system) with the same extension (encoders that pick a format by extension still work):
/// `loss.png` -> `loss.tmp.png`, `step-00000500` -> `step-00000500.tmp`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.tmp.{}", ext.to_string_lossy()),
        None => format!("{stem}.tmp"),
    };
    path.with_file_name(name)
}

/// Makes `path` (a file or a folder) through `make`, which writes it at the temporary path it is
/// given; then renames that over `path`. A stale temporary from a killed run is removed first. If
/// `make` fails, the temporary is removed and `path` is left as it was.
pub fn create<E: From<io::Error>>(
    path: &Path,
    make: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temporary_path(path);
    remove(&tmp)?;
    if let Err(e) = make(&tmp) {
        // The first error is the one worth reporting; a leftover temporary is removed next time.
        let _ = remove(&tmp);
        return Err(e);
    }
    // A folder cannot be renamed over a non-empty one: the old one goes first. Between the two
    // calls neither exists; for checkpoints (the only folders) that happens only when a step is
    // saved twice, and the previous checkpoint is still there.
    if tmp.is_dir() && path.is_dir() {
        std::fs::remove_dir_all(path)?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create(path, |tmp| std::fs::write(tmp, bytes))
}

/// Removes a file or a folder; nothing there is not an error.
fn remove(path: &Path) -> io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        write(&path, b"old").unwrap();
        let failed: Result<(), io::Error> = create(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("killed"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "killed");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary_path(&path).exists());
        assert_eq!(
            temporary_path(&path).file_name().unwrap(),
            "weights.tmp.safetensors"
        );
    }

    #[test]
    fn folders_replace_folders_and_stale_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step-00000010");
        // A killed run left a temporary behind.
        std::fs::create_dir_all(temporary_path(&path).join("junk")).unwrap();
        for content in [&b"first"[..], b"second"] {
            create(&path, |tmp: &Path| -> io::Result<()> {
                assert!(!tmp.exists(), "the stale temporary was removed");
                std::fs::create_dir(tmp)?;
                std::fs::write(tmp.join("state.json"), content)
            })
            .unwrap();
        }
        assert_eq!(std::fs::read(path.join("state.json")).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["step-00000010"]);
    }
}
