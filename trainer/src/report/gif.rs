//! `progress.gif`: the run's sample grids in step order, one frame each.

use std::path::Path;

/// Builds an animated GIF from PNG frames of equal size (`delay` in hundredths of a second;
/// the last frame is held 4x longer). Written via a temporary file.
pub fn from_pngs(
    frames: &[std::path::PathBuf],
    out: &Path,
    delay: u16,
) -> Result<usize, Box<dyn std::error::Error>> {
    if frames.is_empty() {
        return Err("no sample grids to animate".into());
    }
    let tmp = out.with_extension("gif.tmp");
    {
        let file = std::fs::File::create(&tmp)?;
        let mut encoder: Option<gif::Encoder<std::fs::File>> = None;
        let mut file = Some(file);
        for (k, path) in frames.iter().enumerate() {
            let (width, height, mut rgba) = read_rgba(path)?;
            let enc = match encoder.as_mut() {
                Some(e) => e,
                None => {
                    let mut e =
                        gif::Encoder::new(file.take().expect("file once"), width, height, &[])?;
                    e.set_repeat(gif::Repeat::Infinite)?;
                    encoder.insert(e)
                }
            };
            let mut frame = gif::Frame::from_rgba_speed(width, height, &mut rgba, 10);
            frame.delay = if k + 1 == frames.len() {
                delay * 4
            } else {
                delay
            };
            enc.write_frame(&frame)?;
        }
    }
    std::fs::rename(&tmp, out)?;
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
