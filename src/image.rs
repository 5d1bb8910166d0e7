//! Images on the host: network output in [-1, 1] to RGBA bytes, grids, and PNG.

/// A batch of generated images as 8-bit RGBA.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgba {
    pub width: usize,
    pub height: usize,
    /// `width * height * 4` bytes, row-major.
    pub pixels: Vec<u8>,
}

/// Maps one `[C, H, W]` image in [-1, 1] to RGBA, rounding to nearest: one channel is grey,
/// three are RGB (other counts: the first three channels, missing ones black).
pub fn to_rgba(chw: &[f32], channels: usize, size: usize) -> Rgba {
    assert_eq!(
        chw.len(),
        channels * size * size,
        "image length does not match its shape"
    );
    let plane = size * size;
    let byte = |v: f32| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
    let mut pixels = Vec::with_capacity(plane * 4);
    for i in 0..plane {
        let rgb = match channels {
            1 => [chw[i]; 3],
            _ => [0, 1, 2].map(|k| {
                if k < channels {
                    chw[k * plane + i]
                } else {
                    -1.0
                }
            }),
        };
        pixels.extend(rgb.map(byte));
        pixels.push(255);
    }
    Rgba {
        width: size,
        height: size,
        pixels,
    }
}

/// Lays same-sized images out in rows of `columns`, with `pad` black pixels between them.
pub fn grid(images: &[Rgba], columns: usize, pad: usize) -> Rgba {
    let Some(first) = images.first() else {
        return Rgba {
            width: 0,
            height: 0,
            pixels: Vec::new(),
        };
    };
    let (w, h) = (first.width, first.height);
    let columns = columns.clamp(1, images.len());
    let rows = images.len().div_ceil(columns);
    let width = columns * w + (columns + 1) * pad;
    let height = rows * h + (rows + 1) * pad;
    let mut pixels = vec![0u8; width * height * 4];
    for px in pixels.chunks_exact_mut(4) {
        px[3] = 255;
    }
    for (k, image) in images.iter().enumerate() {
        let (x0, y0) = (
            pad + (k % columns) * (w + pad),
            pad + (k / columns) * (h + pad),
        );
        for y in 0..h {
            let src = &image.pixels[y * w * 4..(y + 1) * w * 4];
            let at = ((y0 + y) * width + x0) * 4;
            pixels[at..at + w * 4].copy_from_slice(src);
        }
    }
    Rgba {
        width,
        height,
        pixels,
    }
}

/// Encodes RGBA as PNG bytes.
pub fn encode_png(image: &Rgba) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .expect("writing to a Vec cannot fail");
        writer
            .write_image_data(&image.pixels)
            .expect("pixel count matches the header");
    }
    out
}
