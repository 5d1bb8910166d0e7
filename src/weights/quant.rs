//! Symmetric int8 quantization with one scale per output channel.

/// The axis that holds output channels: burn's Linear weights are `[in, out]` (last axis),
/// convolution filters are `[out, in, kh, kw]` (first axis).
pub fn channel_axis(shape: &[usize]) -> usize {
    if shape.len() == 4 {
        0
    } else {
        shape.len() - 1
    }
}

/// An int8 tensor and its broadcastable scales.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Tensor {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    /// Same rank as the tensor, 1 everywhere except the channel axis.
    pub scale_shape: Vec<usize>,
}

/// Quantizes `data` of `shape` (rank >= 2): `q = round(w / s)`, `s = max|w| / 127` per channel.
pub fn quantize_int8(data: &[f32], shape: &[usize]) -> Int8Tensor {
    let axis = channel_axis(shape);
    let mut scale_shape = vec![1; shape.len()];
    scale_shape[axis] = shape[axis];
    let channel = channel_index(shape, &scale_shape);
    let mut max_abs = vec![0f32; shape[axis]];
    for (i, &w) in data.iter().enumerate() {
        let c = channel(i);
        max_abs[c] = max_abs[c].max(w.abs());
    }
    let scales: Vec<f32> = max_abs.iter().map(|&m| m / 127.0).collect();
    let values = data
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let s = scales[channel(i)];
            if s > 0.0 {
                (w / s).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    Int8Tensor {
        values,
        scales,
        scale_shape: scale_shape.clone(),
    }
}

/// `values * scales`, with `scales` broadcast from `scale_shape` to `shape`.
pub fn dequantize_int8(
    values: &[i8],
    shape: &[usize],
    scales: &[f32],
    scale_shape: &[usize],
) -> Result<Vec<f32>, String> {
    let broadcastable = scale_shape.len() == shape.len()
        && scale_shape
            .iter()
            .zip(shape)
            .all(|(&s, &n)| s == 1 || s == n);
    if !broadcastable {
        return Err(format!(
            "scale shape {scale_shape:?} does not broadcast to {shape:?}"
        ));
    }
    if scales.len() != scale_shape.iter().product::<usize>()
        || values.len() != shape.iter().product::<usize>()
    {
        return Err("element count does not match the shape".into());
    }
    if scales.iter().any(|s| !s.is_finite()) {
        return Err("non-finite scale".into());
    }
    let channel = channel_index(shape, scale_shape);
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, &q)| q as f32 * scales[channel(i)])
        .collect())
}

/// Maps a flat index into `shape` to the flat index of its broadcast scale.
fn channel_index<'a>(shape: &'a [usize], scale_shape: &'a [usize]) -> impl Fn(usize) -> usize + 'a {
    move |mut flat: usize| {
        let (mut out, mut stride) = (0, 1);
        for (&n, &s) in shape.iter().zip(scale_shape).rev() {
            let i = flat % n;
            flat /= n;
            if s != 1 {
                out += i * stride;
                stride *= s;
            }
        }
        out
    }
}

/// How far a quantized copy is from the original.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantError {
    /// ||w - w_q|| / ||w|| (0 when w is all zero).
    pub relative_rms: f64,
    pub max_abs: f64,
}

pub fn error(original: &[f32], approx: &[f32]) -> QuantError {
    let (mut diff2, mut norm2, mut max_abs) = (0f64, 0f64, 0f64);
    for (&a, &b) in original.iter().zip(approx) {
        let d = (a - b) as f64;
        diff2 += d * d;
        norm2 += (a as f64) * (a as f64);
        max_abs = max_abs.max(d.abs());
    }
    QuantError {
        relative_rms: if norm2 > 0.0 {
            (diff2 / norm2).sqrt()
        } else {
            0.0
        },
        max_abs,
    }
}

/// Input rows per int4 group: each output column has one scale per `INT4_GROUP` inputs.
pub const INT4_GROUP: usize = 32;

/// Whether a tensor of `shape` is stored as int4: a Linear weight `[in, out]` whose inputs split
/// into whole groups and whose outputs pair into bytes. Other matrices fall back to int8.
pub fn int4_fits(shape: &[usize]) -> bool {
    shape.len() == 2 && shape[0].is_multiple_of(INT4_GROUP) && shape[1].is_multiple_of(2)
}

/// A group-wise int4 matrix: two values per byte (low nibble first, row-major), and one scale
/// per group of `INT4_GROUP` input rows and output column.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Tensor {
    pub packed: Vec<u8>,
    pub scales: Vec<f32>,
    /// `[in / INT4_GROUP, out]`.
    pub scale_shape: Vec<usize>,
}

/// Quantizes a `[in, out]` matrix (see [`int4_fits`]): `q = round(w / s)` in -7..=7 with
/// `s = max|w| / 7` over each group.
pub fn quantize_int4(data: &[f32], shape: &[usize]) -> Int4Tensor {
    assert!(int4_fits(shape), "{shape:?} does not fit int4 groups");
    let (rows, cols) = (shape[0], shape[1]);
    let groups = rows / INT4_GROUP;
    let mut max_abs = vec![0f32; groups * cols];
    for (i, &w) in data.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let g = (r / INT4_GROUP) * cols + c;
        max_abs[g] = max_abs[g].max(w.abs());
    }
    let scales: Vec<f32> = max_abs.iter().map(|&m| m / 7.0).collect();
    let nibble = |i: usize| {
        let (r, c) = (i / cols, i % cols);
        let s = scales[(r / INT4_GROUP) * cols + c];
        let q = if s > 0.0 {
            (data[i] / s).round().clamp(-7.0, 7.0) as i8
        } else {
            0
        };
        (q as u8) & 0x0f
    };
    let packed = (0..data.len() / 2)
        .map(|j| nibble(2 * j) | (nibble(2 * j + 1) << 4))
        .collect();
    Int4Tensor {
        packed,
        scales,
        scale_shape: vec![groups, cols],
    }
}

/// Unpacks a `[in, out]` int4 matrix stored as `packed` bytes with `scales` of `scale_shape`
/// `[in / group, out]`; the group size follows from the shapes.
pub fn dequantize_int4(
    packed: &[u8],
    shape: &[usize],
    scales: &[f32],
    scale_shape: &[usize],
) -> Result<Vec<f32>, String> {
    let &[rows, cols] = shape else {
        return Err(format!("int4 tensors are matrices, not {shape:?}"));
    };
    let &[groups, scale_cols] = scale_shape else {
        return Err(format!(
            "int4 scale shape {scale_shape:?} is not [groups, out]"
        ));
    };
    if groups == 0 || !rows.is_multiple_of(groups) || scale_cols != cols || !cols.is_multiple_of(2)
    {
        return Err(format!(
            "int4 scale shape {scale_shape:?} does not group {shape:?}"
        ));
    }
    if packed.len() * 2 != rows * cols || scales.len() != groups * cols {
        return Err("element count does not match the shape".into());
    }
    if scales.iter().any(|s| !s.is_finite()) {
        return Err("non-finite scale".into());
    }
    let group = rows / groups;
    // Sign-extend each nibble: shift it to the top of an i8 and back.
    let value = |nibble: u8| ((nibble << 4) as i8 >> 4) as f32;
    Ok(packed
        .iter()
        .flat_map(|&b| [value(b & 0x0f), value(b >> 4)])
        .enumerate()
        .map(|(i, q)| {
            let (r, c) = (i / cols, i % cols);
            q * scales[(r / group) * cols + c]
        })
        .collect())
}
