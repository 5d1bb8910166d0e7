//! Your own images: a folder with one sub-folder per label, images of several formats and sizes,
//! read, cropped and resized; a corrupt file skipped and counted; clear errors for folders that
//! cannot be a dataset; and the command line from the folder to a generated image.

use std::path::Path;
use std::process::Command;

use image::{Rgb, RgbImage};
use trainer::data::folder::{ImageFolder, Scan};
use trainer::data::{is_image_folder, Dataset};

/// `cats/`: a red 40x20 PNG, a 30x30 JPEG, a BMP in a sub-folder; `dogs/`: a blue 17x25 PNG,
/// a GIF, a corrupt JPEG and a text file (not an image: ignored).
fn write_folder(root: &Path) {
    let solid = |w, h, c: [u8; 3]| RgbImage::from_pixel(w, h, Rgb(c));
    let (cats, dogs) = (root.join("cats"), root.join("dogs"));
    std::fs::create_dir_all(cats.join("more")).unwrap();
    std::fs::create_dir_all(&dogs).unwrap();
    solid(40, 20, [255, 0, 0])
        .save(cats.join("a-red.png"))
        .unwrap();
    let gradient = RgbImage::from_fn(30, 30, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 100]));
    gradient.save(cats.join("b.jpg")).unwrap();
    solid(9, 9, [0, 255, 0])
        .save(cats.join("more/c.bmp"))
        .unwrap();
    solid(17, 25, [0, 0, 255])
        .save(dogs.join("a-blue.png"))
        .unwrap();
    solid(12, 12, [200, 200, 0])
        .save(dogs.join("b.gif"))
        .unwrap();
    std::fs::write(dogs.join("c-broken.jpg"), b"\xff\xd8\xff not really a jpeg").unwrap();
    std::fs::write(dogs.join("notes.txt"), b"not an image").unwrap();
}

#[test]
fn a_folder_per_label_reads_as_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    assert!(is_image_folder(dir.path()));
    let scan = Scan::of(dir.path()).unwrap();
    assert_eq!(scan.labels, ["cats", "dogs"]);
    assert_eq!(scan.items.len(), 6, "{:?}", scan.items);
    assert_eq!(scan.items.iter().filter(|(_, l)| *l == 0).count(), 3);

    let data = ImageFolder::open(dir.path(), 16, 3).unwrap();
    assert_eq!(data.image_len(), 3 * 16 * 16);
    let mut out = vec![0f32; data.image_len()];
    let mut read = 0;
    let mut failed = Vec::new();
    for i in 0..data.len() {
        match data.image_into(i, &mut out) {
            Ok(label) => {
                read += 1;
                assert_eq!(label, data.items()[i].1);
                assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
            }
            Err(e) => failed.push(e),
        }
    }
    assert_eq!(read, 5);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("c-broken.jpg"), "{failed:?}");

    // A solid red image stays red after the crop and resize: R = 1, G = B = -1 everywhere.
    let red = data
        .items()
        .iter()
        .position(|(p, _)| p.ends_with("a-red.png"))
        .unwrap();
    data.image_into(red, &mut out).unwrap();
    let plane = 16 * 16;
    assert!(out[..plane].iter().all(|v| (v - 1.0).abs() < 1e-6));
    assert!(out[plane..].iter().all(|v| (v + 1.0).abs() < 1e-6));

    // Grey: one plane, blue is dark.
    let grey = ImageFolder::open(dir.path(), 8, 1).unwrap();
    let mut one = vec![0f32; 64];
    let blue = grey
        .items()
        .iter()
        .position(|(p, _)| p.ends_with("a-blue.png"))
        .unwrap();
    grey.image_into(blue, &mut one).unwrap();
    assert!(one.iter().all(|v| *v < -0.7), "{one:?}");
}

#[test]
fn folders_that_cannot_be_a_dataset_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let e = Scan::of(dir.path()).unwrap_err().to_string();
    assert!(e.contains("has no label folders"), "{e}");
    assert!(!is_image_folder(dir.path()));

    std::fs::create_dir(dir.path().join("cats")).unwrap();
    let e = Scan::of(dir.path()).unwrap_err().to_string();
    assert!(e.contains("has one label folder (`cats`)"), "{e}");

    std::fs::create_dir(dir.path().join("dogs")).unwrap();
    RgbImage::new(4, 4)
        .save(dir.path().join("cats/x.png"))
        .unwrap();
    let e = Scan::of(dir.path()).unwrap_err().to_string();
    assert!(e.contains("dogs holds no images"), "{e}");

    let e = ImageFolder::open(dir.path(), 8, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("grey (1) or RGB (3)"), "{e}");

    // MNIST's and CelebA's folders are not image folders, whatever else they hold.
    let celeba = tempfile::tempdir().unwrap();
    crate::common::write_celeba(celeba.path(), 4);
    assert!(!is_image_folder(celeba.path()));
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), crate::common::output_text(&out))
}

#[test]
fn train_export_and_generate_from_an_image_folder() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("pets");
    write_folder(&data);
    let (runs, weights, out) = (
        work.path().join("run"),
        work.path().join("pets.safetensors"),
        work.path().join("out"),
    );
    let [data, runs, weights, out] = [&data, &runs, &weights, &out].map(|p| p.to_str().unwrap());
    let (ok, text) = run(&[
        "train",
        "--preset",
        "mnist-cpu",
        "--data",
        data,
        "--image-size",
        "16",
        "--channels",
        "3",
        "--run",
        runs,
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("6 images of 2 labels (cats, dogs)"), "{text}");
    assert!(text.contains("skipped 1 unreadable images"), "{text}");

    let (ok, text) = run(&["export", "--run", runs, "--out", weights]);
    assert!(ok, "{text}");
    let file = dit_web::weights::WeightFile::from_bytes(&std::fs::read(weights).unwrap()).unwrap();
    assert_eq!(file.meta.dataset, "images");
    assert_eq!(file.meta.labels, ["cats", "dogs"]);
    assert_eq!(
        (file.meta.model.input_size, file.meta.model.in_channels),
        (16, 3)
    );

    let (ok, text) = run(&[
        "generate",
        "--weights",
        weights,
        "--labels",
        "dogs",
        "cats",
        "--steps",
        "3",
        "--out",
        out,
    ]);
    assert!(ok, "{text}");
    assert!(Path::new(out).join("grid.png").exists());

    // The size flags are for image folders only.
    let mnist = work.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    crate::common::write_mnist(&mnist, 8);
    let (ok, text) = run(&[
        "train",
        "--data",
        mnist.to_str().unwrap(),
        "--run",
        runs,
        "--image-size",
        "16",
    ]);
    assert!(!ok);
    assert!(
        text.contains("--image-size and --channels are for a folder"),
        "{text}"
    );
}
