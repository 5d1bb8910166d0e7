//! `progress.gif`: the run's sample grids in step order, one frame each.

use std::path::Path;

/// Builds an animated GIF from PNG frames of equal size (`delay` in hundredths of a second;
/// the last frame is held 4x longer), whole or not at all.
pub fn from_pngs(
    frames: &[std::path::PathBuf],
    out: &Path,
    delay: u16,
) -> Result<usize, Box<dyn std::error::Error>> {
    if frames.is_empty() {
        return Err("no sample grids to animate".into());
    }
    crate::atomic::create(out, |tmp| -> Result<(), Box<dyn std::error::Error>> {
        // The first frame fixes the canvas size.
        let (width, height, _) = read_rgba(&frames[0])?;
        let mut encoder = gif::Encoder::new(std::fs::File::create(tmp)?, width, height, &[])?;
        encoder.set_repeat(gif::Repeat::Infinite)?;
        for (k, path) in frames.iter().enumerate() {
            let (w, h, mut rgba) = read_rgba(path)?;
            if (w, h) != (width, height) {
                return Err(format!(
                    "{}: {w}x{h}, the first grid is {width}x{height}",
                    path.display()
                )
                .into());
            }
            let mut frame = gif::Frame::from_rgba_speed(w, h, &mut rgba, 10);
            frame.delay = if k + 1 == frames.len() {
                delay * 4
            } else {
                delay
            };
            encoder.write_frame(&frame)?;
        }
        Ok(())
    })?;
    Ok(frames.len())
}

fn read_rgba(path: &Path) -> Result<(u16, u16, Vec<u8>), Box<dyn std::error::Error>> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("image too large")?];
    let info = reader.next_frame(&mut buf)?;
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(format!("{}: expected 8-bit RGBA", path.display()).into());
    }
    buf.truncate(info.buffer_size());
    Ok((info.width as u16, info.height as u16, buf))
}
