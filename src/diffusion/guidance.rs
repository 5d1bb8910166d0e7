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
    combine_pair(cond, uncond, scale)
}

/// `away + scale * (toward - away)`: guidance from the prediction it moves away from (the
/// unconditional one, or a weaker model's) toward the model's conditional prediction.
pub fn combine_pair(toward: &[f32], away: &[f32], scale: f32) -> Vec<f32> {
    toward
        .iter()
        .zip(away)
        .map(|(&c, &u)| u + scale * (c - u))
        .collect()
}

/// Autoguidance's term: `eps += (scale - 1) (cond - weak)`, moving the prediction further from
/// a weaker model's conditional prediction `weak` (scale 1 adds nothing).
pub fn add_autoguidance(eps: &mut [f32], cond: &[f32], weak: &[f32], scale: f32) {
    for ((e, &c), &w) in eps.iter_mut().zip(cond).zip(weak) {
        *e += (scale - 1.0) * (c - w);
    }
}
