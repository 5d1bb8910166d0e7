//! `trainer generate`'s files: one PNG per image, named by label, and a grid, written whole.

use dit_web::generate::Generated;
use dit_web::image::Rgba;
use trainer::generate::write_pngs;

fn image(side: usize, value: u8) -> Rgba {
    Rgba {
        width: side,
        height: side,
        pixels: vec![value; side * side * 4],
    }
}

#[test]
fn write_pngs_writes_one_file_per_label_and_a_grid() {
    let generated = Generated {
        images: vec![image(8, 10), image(8, 120), image(8, 250)],
        labels: vec!["dog".into(), "cat".into(), "owl".into()],
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new folder");
    let written = write_pngs(&generated, &out).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "0000_label-dog.png",
            "0001_label-cat.png",
            "0002_label-owl.png",
            "grid.png"
        ]
    );
    for (path, source) in written.iter().zip(&generated.images) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert_eq!(pixels, source.pixels, "{path:?}");
    }
    let grid = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&written[3]).unwrap(),
    ))
    .read_info()
    .unwrap();
    let info = grid.info();
    assert_eq!((info.width, info.height), (3 * 8 + 4 * 2, 8 + 2 * 2));
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
    // A folder that cannot be made names itself.
    let blocked = dir.path().join("a file");
    std::fs::write(&blocked, b"x").unwrap();
    let err = write_pngs(&generated, &blocked.join("out")).unwrap_err();
    assert!(err.to_string().contains("a file"), "{err}");
}
