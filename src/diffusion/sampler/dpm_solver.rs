/// One DPM-Solver++(2M) step (Lu et al. 2022, multistep, data prediction).
///
/// With alpha = sqrt(a), sigma = sqrt(1 - a) and log-SNR lambda = ln(alpha / sigma), a step of
/// size h = lambda_next - lambda is
/// `x_next = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) D`, where D is x0 on the first step
/// and the second-order extrapolation `(1 + 1/(2r)) x0 - 1/(2r) x0_prev` (r = h_prev / h)
/// afterwards. The last step lands on the clean image (sigma_next = 0): x_next = x0, first order.
pub(super) fn step(
    x: &[f32],
    x0: &[f32],
    a: f64,
    a_next: f64,
    history: &mut Option<(Vec<f32>, f64)>,
) -> Vec<f32> {
    if a_next >= 1.0 {
        *history = None;
        return x0.to_vec();
    }
    let lambda = |a: f64| 0.5 * (a / (1.0 - a)).ln();
    let h = lambda(a_next) - lambda(a);
    let c_x = ((1.0 - a_next) / (1.0 - a)).sqrt() as f32;
    let c_d = (-(a_next.sqrt()) * ((-h).exp() - 1.0)) as f32;
    let next = match history.as_ref() {
        Some((x0_prev, h_prev)) => {
            let r = h_prev / h;
            let (w, w_prev) = ((1.0 + 0.5 / r) as f32, (0.5 / r) as f32);
            x.iter()
                .zip(x0)
                .zip(x0_prev)
                .map(|((&x, &x0), &p)| c_x * x + c_d * (w * x0 - w_prev * p))
                .collect()
        }
        None => x
            .iter()
            .zip(x0)
            .map(|(&x, &x0)| c_x * x + c_d * x0)
            .collect(),
    };
    *history = Some((x0.to_vec(), h));
    next
}
