//! The CelebA loader on a tiny folder in the official layout, made by the test.

use crate::common;

use trainer::data::celeba::{CelebA, Partition, CROP, FEMALE, MALE};
use trainer::data::loader::Loader;
use trainer::data::Dataset;

#[test]
fn reads_the_official_layout_crops_the_centre_and_labels_by_male() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 7);
    let train = CelebA::load(root.path(), Partition::Train).unwrap();
    assert_eq!(train.len(), 6);
    assert_eq!(CelebA::load(root.path(), Partition::Test).unwrap().len(), 1);
    let labels: Vec<usize> = train.items().iter().map(|i| i.1).collect();
    assert_eq!(labels, [MALE, FEMALE, MALE, FEMALE, MALE, FEMALE]);

    let mut image = vec![0f32; train.image_len()];
    assert_eq!(train.image_into(0, &mut image).unwrap(), MALE);
    // The 128x128 centre crop is the red square: red high, blue low, everywhere (JPEG-lossy).
    let plane = CROP * CROP;
    let mean = |c: usize| image[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
    assert!(
        mean(0) > 0.6 && mean(2) < -0.6,
        "red {} blue {}",
        mean(0),
        mean(2)
    );
}

#[test]
fn corrupt_missing_and_small_images_are_skipped_and_counted() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 9);
    let dir = root.path().join("img_align_celeba");
    std::fs::write(dir.join("000002.jpg"), b"not a jpeg").unwrap();
    std::fs::remove_file(dir.join("000003.jpg")).unwrap();
    image::RgbImage::new(100, 100)
        .save(dir.join("000004.jpg"))
        .unwrap();
    let data = CelebA::load(root.path(), Partition::Train).unwrap();
    let mut loader = Loader::new(&data, 1).with_workers(2);
    for _ in 0..4 {
        let (images, labels) = loader.next_batch(2);
        assert_eq!((images.len(), labels.len()), (2 * data.image_len(), 2));
        assert!(images.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    let (count, reasons) = loader.skipped();
    assert!(count >= 3, "{count}");
    let all = reasons.join("\n");
    assert!(
        all.contains("000002.jpg")
            && all.contains("000003.jpg")
            && all.contains("smaller than the 128x128 crop"),
        "{all}"
    );
}

#[test]
fn a_wrong_folder_names_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let err = CelebA::load(root.path(), Partition::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("list_attr_celeba.txt") && err.contains("img_align_celeba"),
        "{err}"
    );
    common::write_celeba(root.path(), 3);
    std::fs::write(
        root.path().join("list_attr_celeba.txt"),
        "3\nSmiling\n000001.jpg 1\n",
    )
    .unwrap();
    let err = CelebA::load(root.path(), Partition::Train)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no `Male` attribute"), "{err}");
}

#[test]
fn worker_threads_do_not_change_the_batches() {
    let root = tempfile::tempdir().unwrap();
    common::write_celeba(root.path(), 9);
    let data = CelebA::load(root.path(), Partition::Train).unwrap();
    let one = Loader::new(&data, 5).with_workers(1).next_batch(4);
    let two = Loader::new(&data, 5).with_workers(3).next_batch(4);
    assert_eq!(one, two);
}
