use crate::diffusion::noise::NoiseSource;

/// One DDIM step: `x_next = sqrt(a_next) x0 + sqrt(1 - a_next - sigma^2) eps + sigma z`, with
/// `sigma = eta sqrt((1 - a_next) / (1 - a)) sqrt(1 - a / a_next)` (eta = 0: deterministic).
pub(super) fn step(
    x0: &[f32],
    eps: &[f32],
    a: f64,
    a_next: f64,
    eta: f64,
    noise: NoiseSource,
) -> Vec<f32> {
    let sigma = eta * ((1.0 - a_next) / (1.0 - a)).sqrt() * (1.0 - a / a_next).sqrt();
    let c_x0 = a_next.sqrt() as f32;
    let c_eps = (1.0 - a_next - sigma * sigma).max(0.0).sqrt() as f32;
    let mean = x0.iter().zip(eps).map(|(&x0, &e)| c_x0 * x0 + c_eps * e);
    if sigma > 0.0 {
        let sigma = sigma as f32;
        mean.zip(noise.draw()).map(|(m, z)| m + sigma * z).collect()
    } else {
        mean.collect()
    }
}
