//! Classifier-free guidance: `eps = eps(x, null) + s (eps(x, y) - eps(x, null))`, with the
//! conditional and unconditional halves run as one doubled batch, applied to every channel.

/// The doubled label batch: the requested labels, then as many null labels.
pub fn doubled_labels(labels: &[usize], null_label: usize) -> Vec<usize> {
    labels
        .iter()
        .copied()
        .chain(labels.iter().map(|_| null_label))
        .collect()
}

/// Combines the network output on a doubled batch (`[cond..., uncond...]`) into guided noise.
pub fn combine(doubled_eps: &[f32], scale: f32) -> Vec<f32> {
    let (cond, uncond) = doubled_eps.split_at(doubled_eps.len() / 2);
    cond.iter()
        .zip(uncond)
        .map(|(&c, &u)| u + scale * (c - u))
        .collect()
}
