//! CelebA in its official aligned layout: `img_align_celeba/*.jpg` (178x218),
//! `list_attr_celeba.txt` (attribute `Male`: 1 -> "male", -1 -> "female") and
//! `list_eval_partition.txt` (0 = train). Images are centre-cropped to 128x128 without resizing,
//! as the reference does, and scaled to [-1, 1].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::path_error::PathError;

use super::dataset::{DataError, Dataset};

pub const CROP: usize = 128;
/// Label ids, in the order of the `celeba` preset's label names.
pub const FEMALE: usize = 0;
pub const MALE: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Train,
    Validation,
    Test,
}

pub struct CelebA {
    dir: PathBuf,
    /// (file name, label) of the chosen partition, in file order.
    items: Vec<(String, usize)>,
}

impl CelebA {
    pub fn load(root: &Path, partition: Partition) -> Result<Self, DataError> {
        let attr_path = root.join("list_attr_celeba.txt");
        let part_path = root.join("list_eval_partition.txt");
        let dir = root.join("img_align_celeba");
        for needed in [&attr_path, &part_path, &dir] {
            if !needed.exists() {
                return Err(DataError::Missing(format!(
                    "{} not found: --data must be the CelebA folder with img_align_celeba/, \
                     list_attr_celeba.txt and list_eval_partition.txt",
                    needed.display()
                )));
            }
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(PathError::at(p));
        let bad = |path: &Path, reason: String| DataError::Format {
            path: path.to_path_buf(),
            reason,
        };

        let attrs = read(&attr_path)?;
        let mut lines = attrs.lines();
        let _count = lines.next();
        let header = lines
            .next()
            .ok_or_else(|| bad(&attr_path, "no attribute names line".into()))?;
        let male = header
            .split_whitespace()
            .position(|a| a == "Male")
            .ok_or_else(|| bad(&attr_path, "no `Male` attribute".into()))?;
        let mut labels = HashMap::new();
        for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let name = fields.next().expect("non-empty line");
            let value = fields
                .nth(male)
                .ok_or_else(|| bad(&attr_path, format!("line {}: too few attributes", n + 3)))?;
            let label = match value {
                "1" => MALE,
                "-1" => FEMALE,
                other => return Err(bad(&attr_path, format!("line {}: Male = `{other}`", n + 3))),
            };
            labels.insert(name.to_string(), label);
        }

        let wanted = match partition {
            Partition::Train => "0",
            Partition::Validation => "1",
            Partition::Test => "2",
        };
        let mut items = Vec::new();
        for (n, line) in read(&part_path)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(part)) = (fields.next(), fields.next()) else {
                return Err(bad(
                    &part_path,
                    format!("line {}: expected `<file> <partition>`", n + 1),
                ));
            };
            if part == wanted {
                let label = *labels
                    .get(name)
                    .ok_or_else(|| bad(&part_path, format!("{name} has no attributes")))?;
                items.push((name.to_string(), label));
            }
        }
        if items.is_empty() {
            return Err(bad(
                &part_path,
                format!("no images in the {partition:?} partition"),
            ));
        }
        Ok(Self { dir, items })
    }

    /// (file name, label) of each image.
    pub fn items(&self) -> &[(String, usize)] {
        &self.items
    }
}

impl Dataset for CelebA {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn image_len(&self) -> usize {
        3 * CROP * CROP
    }

    fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
        let (name, label) = &self.items[index];
        let path = self.dir.join(name);
        let image = image::open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_rgb8();
        let (w, h) = (image.width() as usize, image.height() as usize);
        if w < CROP || h < CROP {
            return Err(format!(
                "{}: {w}x{h} is smaller than the {CROP}x{CROP} crop",
                path.display()
            ));
        }
        let (x0, y0) = ((w - CROP) / 2, (h - CROP) / 2);
        let plane = CROP * CROP;
        for y in 0..CROP {
            for x in 0..CROP {
                let px = image.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
                for c in 0..3 {
                    out[c * plane + y * CROP + x] = px[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        Ok(*label)
    }
}
