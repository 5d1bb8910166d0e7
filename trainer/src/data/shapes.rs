//! A toy dataset in CelebA's layout, generated: `img_align_celeba/*.jpg` (178x218),
//! `list_attr_celeba.txt` and `list_eval_partition.txt`, where the `Male` attribute decides what
//! an image shows. "Female" images hold warm discs (reds, oranges, pinks) on a dark warm
//! background, "male" images cool squares (blues, greens) on a dark cool one; one to three shapes
//! of random size and place inside the centre crop, a gentle gradient and grain. A model conditioned on the label must
//! learn both the colour family and the shape to draw its class: a short run on this data shows
//! whether `trainer train --preset celeba` learns at all, which a finite loss alone cannot.
//!
//! The same seed writes the same files (the noise is dit-web's portable RNG).

use std::path::Path;

use crate::path_error::PathError;
use dit_web::diffusion::NoiseRng;

use super::celeba::{FEMALE, MALE};
use super::dataset::DataError;

/// CelebA's aligned image size.
pub const WIDTH: u32 = 178;
pub const HEIGHT: u32 = 218;

/// The label of image `index` (0-based): female and male alternate.
pub fn label_of(index: usize) -> usize {
    if index.is_multiple_of(2) {
        FEMALE
    } else {
        MALE
    }
}

/// Writes `count` images into `root` (which must not exist, or be empty), whole or not at all:
/// the folder appears only when every file is written. The last tenth of the images (at least
/// one) are the test partition, the tenth before them validation, the rest training.
pub fn write(root: &Path, count: usize, seed: u64) -> Result<(), DataError> {
    if count < 2 {
        return Err(DataError::Unsupported(format!(
            "{count} images: give at least 2 (one of each label)"
        )));
    }
    if std::fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(DataError::Unsupported(format!(
            "{} exists and is not empty: give a new folder",
            root.display()
        )));
    }
    if root.is_dir() {
        std::fs::remove_dir(root).map_err(PathError::at(root))?;
    }
    let held_out = (count / 10).max(1);
    let written = crate::atomic::create(root, |tmp| -> Result<(), Box<dyn std::error::Error>> {
        let images = tmp.join("img_align_celeba");
        std::fs::create_dir_all(&images).map_err(PathError::at(&images))?;
        let mut attrs = format!("{count}\nBlack_Hair Male Smiling\n");
        let mut partitions = String::new();
        for index in 0..count {
            let name = format!("{:06}.jpg", index + 1);
            let mut rng = NoiseRng::new(seed, index as u64);
            let label = label_of(index);
            let path = images.join(&name);
            draw(label, &mut rng)
                .save(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let male = if label == MALE { " 1" } else { "-1" };
            attrs.push_str(&format!("{name} -1 {male} -1\n"));
            let partition = match count - index {
                left if left <= held_out => 2,
                left if left <= 2 * held_out && count > 2 * held_out => 1,
                _ => 0,
            };
            partitions.push_str(&format!("{name} {partition}\n"));
        }
        for (file, text) in [
            ("list_attr_celeba.txt", attrs),
            ("list_eval_partition.txt", partitions),
        ] {
            let path = tmp.join(file);
            std::fs::write(&path, text).map_err(PathError::at(&path))?;
        }
        Ok(())
    });
    written.map_err(|e| DataError::Format {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })
}

/// One image of class `label`.
fn draw(label: usize, rng: &mut NoiseRng) -> image::RgbImage {
    // The 128x128 centre crop the loader keeps spans x 25..153, y 45..173.
    let (x0, y0, side) = (25.0, 45.0, 128.0);
    let shapes: Vec<Shape> = (0..1 + rng.below(3))
        .map(|_| {
            let size = 12.0 + 22.0 * rng.uniform();
            let cx = x0 + size + (side - 2.0 * size) * rng.uniform();
            let cy = y0 + size + (side - 2.0 * size) * rng.uniform();
            let colour = colour(label, rng);
            Shape {
                cx,
                cy,
                size,
                colour,
            }
        })
        .collect();
    let tilt = [rng.uniform(), rng.uniform()];
    let mut grain = vec![0f32; (WIDTH * HEIGHT) as usize];
    rng.fill_normal(&mut grain);
    image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
        let shade = 30.0 + 30.0 * (tilt[0] * fx / WIDTH as f64 + tilt[1] * fy / HEIGHT as f64);
        // The background leans to the class's colour family too: warm or cool.
        let mut px = match label {
            FEMALE => [shade + 30.0, shade, shade - 15.0],
            _ => [shade - 15.0, shade, shade + 30.0],
        };
        for s in &shapes {
            let inside = match label {
                FEMALE => (fx - s.cx).powi(2) + (fy - s.cy).powi(2) <= s.size * s.size,
                _ => (fx - s.cx).abs() <= s.size && (fy - s.cy).abs() <= s.size,
            };
            if inside {
                px = s.colour;
            }
        }
        let g = 6.0 * grain[(y * WIDTH + x) as usize] as f64;
        image::Rgb(px.map(|v| (v + g).clamp(0.0, 255.0) as u8))
    })
}

struct Shape {
    cx: f64,
    cy: f64,
    size: f64,
    colour: [f64; 3],
}

/// A warm colour for female, a cool one for male: the hue's family is the class.
fn colour(label: usize, rng: &mut NoiseRng) -> [f64; 3] {
    let (a, b) = (rng.uniform(), rng.uniform());
    match label {
        // Red to orange to pink.
        FEMALE => [200.0 + 55.0 * a, 40.0 + 110.0 * b, 40.0 + 100.0 * a * b],
        // Blue to teal to green.
        _ => [30.0 + 40.0 * a, 80.0 + 150.0 * b, 230.0 - 120.0 * b * a],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::celeba::{CelebA, Partition};
    use crate::data::Dataset;

    #[test]
    fn the_folder_loads_as_celeba_and_the_classes_differ_in_colour() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shapes");
        write(&root, 20, 7).unwrap();
        let train = CelebA::load(&root, Partition::Train).unwrap();
        assert_eq!(train.len(), 16);
        assert_eq!(CelebA::load(&root, Partition::Test).unwrap().len(), 2);
        assert_eq!(CelebA::load(&root, Partition::Validation).unwrap().len(), 2);
        // Mean red minus mean blue over each image's brightest pixels: warm discs vs cool squares.
        let mut image = vec![0f32; train.image_len()];
        let plane = image.len() / 3;
        for index in 0..train.len() {
            let label = train.image_into(index, &mut image).unwrap();
            assert_eq!(label, label_of(index));
            let warmth: f32 = (0..plane)
                .filter(|&i| image[i].max(image[2 * plane + i]) > 0.2)
                .map(|i| image[i] - image[2 * plane + i])
                .sum();
            match label {
                FEMALE => assert!(warmth > 0.0, "image {index}: {warmth}"),
                _ => assert!(warmth < 0.0, "image {index}: {warmth}"),
            }
        }
    }

    #[test]
    fn the_same_seed_writes_the_same_images_and_an_existing_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, 4, 1).unwrap();
        write(&b, 4, 1).unwrap();
        let read = |root: &Path| std::fs::read(root.join("img_align_celeba/000003.jpg")).unwrap();
        assert_eq!(read(&a), read(&b));
        let err = write(&a, 4, 1).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert!(write(&dir.path().join("c"), 1, 0).is_err());
    }
}
