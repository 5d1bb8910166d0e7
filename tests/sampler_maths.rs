//! The samplers checked without a trained network: for data from a known distribution the
//! exact noise predictor E[eps | x_t] is closed-form, so each sampler must reproduce the data.

use dit_web::diffusion::{
    DdpmVariance, NoiseRng, NoiseSchedule, Sampler, SamplerConfig, SamplerKind,
};
use dit_web::{Convention, ScheduleConfig};

fn schedule(t: usize, convention: Convention) -> NoiseSchedule {
    NoiseSchedule::new(&ScheduleConfig::new(t).with_convention(convention))
}

/// Data x0 ~ N(mu, s^2): x_t ~ N(sqrt(a) mu, a s^2 + 1 - a) and
/// E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a).
fn gaussian_eps(mu: f64, s: f64) -> impl Fn(f64, f64) -> f64 {
    move |x, a| (1.0 - a).sqrt() * (x - a.sqrt() * mu) / (a * s * s + 1.0 - a)
}

/// Data x0 = +-m with P(+m) = p: E[x0 | x_t] weighs each point by its likelihood
/// N(x_t; sqrt(a) c, 1 - a), and E[eps | x_t] = (x_t - sqrt(a) E[x0 | x_t]) / sqrt(1 - a).
fn two_point_eps(m: f64, p: f64) -> impl Fn(f64, f64) -> f64 {
    move |x, a| {
        let var = 1.0 - a;
        let log_w = |c: f64, prior: f64| prior.ln() - (x - a.sqrt() * c).powi(2) / (2.0 * var);
        let (lp, lm) = (log_w(m, p), log_w(-m, 1.0 - p));
        let top = lp.max(lm);
        let (wp, wm) = ((lp - top).exp(), (lm - top).exp());
        let mean_x0 = m * (wp - wm) / (wp + wm);
        (x - a.sqrt() * mean_x0) / var.sqrt()
    }
}

/// x_T drawn from the exact marginal at T-1, `sqrt(a) x0 + sqrt(1 - a) z`, given data samples
/// x0 (a linear schedule with T = 400 ends at alpha-bar = 0.018, not at pure noise).
fn prior(schedule: &NoiseSchedule, x0: &[f32], seed: u64) -> Vec<f32> {
    let a = schedule.alpha_bar(schedule.num_timesteps() - 1);
    x0.iter()
        .zip(noise(x0.len(), seed))
        .map(|(&x0, z)| (a.sqrt() * x0 as f64 + (1.0 - a).sqrt() * z as f64) as f32)
        .collect()
}

fn gaussian_data(n: usize, mu: f64, s: f64, seed: u64) -> Vec<f32> {
    noise(n, seed + 1000)
        .iter()
        .map(|&z| (mu + s * z as f64) as f32)
        .collect()
}

fn two_point_data(n: usize, m: f64, p: f64, seed: u64) -> Vec<f32> {
    let mut rng = NoiseRng::new(seed + 2000, 0);
    (0..n)
        .map(|_| {
            if rng.uniform() < p {
                m as f32
            } else {
                -m as f32
            }
        })
        .collect()
}

/// Runs a sampler from `x_t` with an exact predictor; each value is an independent 1-D sample.
fn run(
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    x_t: Vec<f32>,
    eps: &impl Fn(f64, f64) -> f64,
) -> Vec<f32> {
    let mut sampler = Sampler::with_initial_noise(schedule, config, x_t, 1);
    while let Some(t) = sampler.timestep() {
        let a = schedule.alpha_bar(t);
        let e: Vec<f32> = sampler
            .x()
            .iter()
            .map(|&x| eps(x as f64, a) as f32)
            .collect();
        sampler.advance(&e);
    }
    sampler.into_output()
}

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0f32; n];
    NoiseRng::new(seed, 0).fill_normal(&mut v);
    v
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn config(kind: SamplerKind, steps: usize) -> SamplerConfig {
    SamplerConfig {
        kind,
        steps,
        seed: 11,
        ..Default::default()
    }
}

/// A deterministic sampler with an exact Gaussian predictor is affine per value. Feeding it the
/// marginal's mean and mean + one std gives the map's offset and gain on a standardised input;
/// the ideal sends them to mu and mu + s. Returns |gain - s| + |offset - mu|.
fn affine_error(schedule: &NoiseSchedule, config: &SamplerConfig, mu: f64, s: f64) -> f64 {
    let a = schedule.alpha_bar(schedule.num_timesteps() - 1);
    let (m, sd) = (a.sqrt() * mu, (a * s * s + 1.0 - a).sqrt());
    let out = run(
        schedule,
        config,
        vec![m as f32, (m + sd) as f32],
        &gaussian_eps(mu, s),
    );
    let (b, g) = (out[0] as f64, (out[1] - out[0]) as f64);
    (g - s).abs() + (b - mu).abs()
}

const N: usize = 20_000;

#[test]
fn every_sampler_reproduces_a_gaussian() {
    let (mu, s) = (0.3, 0.5);
    for convention in [Convention::Standard, Convention::Shifted] {
        let schedule = schedule(400, convention);
        // DDIM is first order: it needs many steps to converge (its error at 50 steps is the
        // subject of the accuracy test below).
        for (kind, steps) in [
            (SamplerKind::Ddpm, 0),
            (SamplerKind::Ddim, 200),
            (SamplerKind::DpmSolverPP, 20),
        ] {
            let x_t = prior(&schedule, &gaussian_data(N, mu, s, 1), 1);
            let out = run(&schedule, &config(kind, steps), x_t, &gaussian_eps(mu, s));
            let (m, sd) = mean_std(&out);
            // Standard errors at N = 20k: 0.0035 for the mean, 0.0025 for the std.
            assert!((m - mu).abs() < 0.015, "{kind} {convention:?}: mean {m}");
            assert!((sd - s).abs() < 0.015, "{kind} {convention:?}: std {sd}");
        }
    }
}

#[test]
fn stochastic_ddim_also_reproduces_a_gaussian() {
    let schedule = schedule(400, Convention::Standard);
    let config = SamplerConfig {
        eta: 1.0,
        ..config(SamplerKind::Ddim, 200)
    };
    let x_t = prior(&schedule, &gaussian_data(N, -0.2, 0.7, 2), 2);
    let (m, sd) = mean_std(&run(&schedule, &config, x_t, &gaussian_eps(-0.2, 0.7)));
    assert!(
        (m + 0.2).abs() < 0.02 && (sd - 0.7).abs() < 0.02,
        "mean {m} std {sd}"
    );
}

#[test]
fn ddim_at_eta_1_takes_ddpm_steps() {
    // DDIM's mean with sigma = sqrt(beta-tilde) is the DDPM posterior's mean, and both draw their
    // noise from the same streams, so eta between 0 and 1 runs from the ODE to DDPM.
    let schedule = schedule(400, Convention::Standard);
    let x_t = prior(&schedule, &two_point_data(2000, 0.8, 0.7, 6), 6);
    let eps = two_point_eps(0.8, 0.7);
    let ddpm = run(&schedule, &config(SamplerKind::Ddpm, 20), x_t.clone(), &eps);
    let ddim = SamplerConfig {
        eta: 1.0,
        ..config(SamplerKind::Ddim, 20)
    };
    let ddim = run(&schedule, &ddim, x_t, &eps);
    let worst = ddpm
        .iter()
        .zip(&ddim)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "DDPM and DDIM(eta 1) differ by {worst}");
}

#[test]
fn ddpm_with_the_large_variance_reproduces_a_gaussian_and_ends_clean() {
    let (mu, s) = (0.3, 0.5);
    let schedule = schedule(400, Convention::Standard);
    let ddpm = |steps, ddpm_variance| SamplerConfig {
        ddpm_variance,
        ..config(SamplerKind::Ddpm, steps)
    };
    // Over every timestep the two bounds differ little per step: both reproduce the data.
    let x_t = prior(&schedule, &gaussian_data(N, mu, s, 5), 5);
    let large = ddpm(0, DdpmVariance::Large);
    let (m, sd) = mean_std(&run(&schedule, &large, x_t.clone(), &gaussian_eps(mu, s)));
    assert!(
        (m - mu).abs() < 0.015 && (sd - s).abs() < 0.015,
        "mean {m} std {sd}"
    );
    // On 20 large steps the posterior's variance leaves the samples too narrow (std 0.42 of
    // 0.5: each step's x0 is a mean, and its uncertainty is not added back); the upper bound
    // adds more noise and lands nearer (0.53).
    let spread = |variance| {
        let out = run(
            &schedule,
            &ddpm(20, variance),
            x_t.clone(),
            &gaussian_eps(mu, s),
        );
        mean_std(&out).1
    };
    let (small_sd, large_sd) = (spread(DdpmVariance::Small), spread(DdpmVariance::Large));
    assert!(
        large_sd > small_sd + 0.01 && (large_sd - s).abs() < (small_sd - s).abs(),
        "std small {small_sd}, large {large_sd}"
    );
    // Data at one point: the exact predictor gives x0 = mu at every step, and the last step,
    // which adds no noise with either variance, must return it (its beta would add 0.01).
    let out = run(
        &schedule,
        &ddpm(20, DdpmVariance::Large),
        x_t,
        &gaussian_eps(mu, 0.0),
    );
    let worst = out
        .iter()
        .map(|&x| (x as f64 - mu).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "an output {worst} away from the data");
}

#[test]
fn every_sampler_reproduces_a_two_point_mixture() {
    let (m, p) = (0.8, 0.7);
    let schedule = schedule(400, Convention::Standard);
    for (kind, steps) in [
        (SamplerKind::Ddpm, 0),
        (SamplerKind::Ddim, 50),
        (SamplerKind::DpmSolverPP, 20),
    ] {
        let x_t = prior(&schedule, &two_point_data(N, m, p, 3), 3);
        let out = run(&schedule, &config(kind, steps), x_t, &two_point_eps(m, p));
        let positive = out.iter().filter(|&&x| x > 0.0).count() as f64 / N as f64;
        // Standard error of the fraction: 0.0032.
        assert!((positive - p).abs() < 0.02, "{kind}: P(+) = {positive}");
        let off = out
            .iter()
            .map(|&x| ((x.abs() as f64) - m).abs())
            .sum::<f64>()
            / N as f64;
        assert!(
            off < 0.02,
            "{kind}: mean distance to the nearest point {off}"
        );
    }
}

#[test]
fn dpm_solver_at_20_steps_is_at_least_as_accurate_as_ddim_at_50() {
    for (t, (mu, s)) in [400, 1000]
        .into_iter()
        .flat_map(|t| [(0.0, 0.5), (0.3, 0.2), (-0.5, 0.05)].map(|d| (t, d)))
    {
        let schedule = schedule(t, Convention::Standard);
        let dpm = affine_error(&schedule, &config(SamplerKind::DpmSolverPP, 20), mu, s);
        let ddim = affine_error(&schedule, &config(SamplerKind::Ddim, 50), mu, s);
        let ddim_20 = affine_error(&schedule, &config(SamplerKind::Ddim, 20), mu, s);
        println!("T={t} N({mu}, {s}^2): affine error dpm++@20 {dpm:.2e}, ddim@50 {ddim:.2e}, ddim@20 {ddim_20:.2e}");
        assert!(dpm <= ddim, "dpm++@20 {dpm} worse than ddim@50 {ddim}");
        assert!(ddim < ddim_20, "more DDIM steps should help");
    }
}

#[test]
fn dpm_solver_error_falls_with_more_steps() {
    let schedule = schedule(1000, Convention::Standard);
    let errors: Vec<f64> = [5, 10, 20, 40]
        .iter()
        .map(|&n| affine_error(&schedule, &config(SamplerKind::DpmSolverPP, n), 0.1, 0.3))
        .collect();
    println!("dpm++ affine error at 5/10/20/40 steps: {errors:?}");
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
}

#[test]
fn clipping_keeps_predictions_in_range() {
    let schedule = schedule(400, Convention::Standard);
    let config = SamplerConfig {
        clip_x0: true,
        ..config(SamplerKind::DpmSolverPP, 20)
    };
    // Data far outside [-1, 1]: the clipped sampler must stay inside.
    let x_t = prior(&schedule, &gaussian_data(2000, 3.0, 0.1, 4), 4);
    let out = run(&schedule, &config, x_t, &gaussian_eps(3.0, 0.1));
    assert!(
        out.iter().all(|&x| (-1.0..=1.0).contains(&x)),
        "max {:?}",
        out.iter().cloned().fold(f32::MIN, f32::max)
    );
}

#[test]
fn schedule_conventions_follow_the_reference() {
    let config = ScheduleConfig::new(400);
    let standard = NoiseSchedule::new(&config);
    let shifted = NoiseSchedule::new(&config.clone().with_convention(Convention::Shifted));
    assert_eq!(shifted.alpha_bar(0), 1.0);
    assert!((standard.alpha_bar(0) - (1.0 - 1e-4)).abs() < 1e-12);
    for t in 1..400 {
        // The shifted table is the standard one moved by a step.
        assert!((shifted.alpha_bar(t) - standard.alpha_bar(t - 1)).abs() < 1e-12);
    }
    // Linear betas: the last beta is 2e-2.
    assert!((1.0 - standard.alpha_bar(399) / standard.alpha_bar(398) - 2e-2).abs() < 1e-12);
    assert_eq!(shifted.first_noisy_timestep(), 1);
    assert_eq!(standard.first_noisy_timestep(), 0);
    // DDPM over every step: T - 1 network calls under the shifted table (t = 399 ... 1), as the
    // reference's loop, and T under the standard one.
    let ddpm = config_all(SamplerKind::Ddpm);
    assert_eq!(Sampler::new(&shifted, &ddpm, 1, 1).num_steps(), 399);
    assert_eq!(Sampler::new(&standard, &ddpm, 1, 1).num_steps(), 400);
}

fn config_all(kind: SamplerKind) -> SamplerConfig {
    SamplerConfig {
        kind,
        steps: 0,
        ..Default::default()
    }
}

#[test]
fn timesteps_start_at_the_top_and_are_distinct() {
    let s = schedule(400, Convention::Shifted);
    for steps in [1, 2, 7, 20, 50, 398, 399, 1000] {
        let ts = s.timesteps(steps);
        assert_eq!(ts[0], 399);
        assert_eq!(ts.len(), steps.min(399));
        assert!(ts.windows(2).all(|w| w[0] > w[1]), "{steps}: {ts:?}");
        assert!(*ts.last().unwrap() >= 1);
        if steps > 1 {
            assert_eq!(*ts.last().unwrap(), 1);
        }
    }
}

#[test]
fn noise_is_standard_normal_and_reproducible() {
    let v = noise(200_000, 5);
    let (m, sd) = mean_std(&v);
    assert!(
        m.abs() < 0.01 && (sd - 1.0).abs() < 0.01,
        "mean {m} std {sd}"
    );
    let tail = v.iter().filter(|x| x.abs() > 1.96).count() as f64 / v.len() as f64;
    assert!((tail - 0.05).abs() < 0.003, "two-sided 5% tail: {tail}");
    assert_eq!(v[..100], noise(100, 5)[..]);
    assert_ne!(noise(100, 5), noise(100, 6));
    // A saved state resumes the same stream, spare normal included.
    let mut rng = NoiseRng::new(5, 0);
    let first = (0..7).map(|_| rng.normal()).collect::<Vec<_>>();
    let mut resumed = NoiseRng::from_state(&rng.state());
    assert_eq!(first[..], noise(107, 5)[..7]);
    assert_eq!(
        (0..100).map(|_| resumed.normal()).collect::<Vec<_>>()[..],
        noise(107, 5)[7..]
    );
    let mut other_stream = vec![0f32; 100];
    NoiseRng::new(5, 1).fill_normal(&mut other_stream);
    assert_ne!(other_stream, noise(100, 5));
}

#[test]
fn ddpm_variances_parse() {
    assert_eq!("small".parse(), Ok(DdpmVariance::Small));
    assert_eq!("large".parse(), Ok(DdpmVariance::Large));
    let err = "huge".parse::<DdpmVariance>().unwrap_err();
    assert!(err.contains("small or large"), "{err}");
}

#[test]
fn sampler_kinds_parse_and_print() {
    for name in SamplerKind::NAMES {
        assert_eq!(name.parse::<SamplerKind>().unwrap().to_string(), name);
    }
    let err = "euler".parse::<SamplerKind>().unwrap_err();
    assert!(err.contains("dpm++"), "{err}");
}

#[test]
fn q_sample_is_the_closed_form_of_the_forward_process() {
    // Linear betas 1e-4..2e-2 over T = 400; alpha_bar[t] = prod_{i <= t} (1 - beta_i) in the
    // standard convention, prod_{i < t} in the shifted one (t = 0 is the clean image there).
    let t_max = 400;
    let beta = |i: usize| 1e-4 + (2e-2 - 1e-4) * i as f64 / (t_max - 1) as f64;
    for (convention, last) in [(Convention::Standard, 1), (Convention::Shifted, 0)] {
        let s = schedule(t_max, convention);
        let x0 = [0.5f32, -1.0, 0.25, 1.0];
        let eps = [1.0f32, 0.5, -2.0, 0.0];
        let t = [0, 399];
        let x_t = s.q_sample(&x0, &eps, &t);
        for (i, (&x, &e)) in x0.iter().zip(&eps).enumerate() {
            let step = t[i / 2];
            let alpha_bar: f64 = (0..step + last).map(|j| 1.0 - beta(j)).product();
            let expected = alpha_bar.sqrt() * x as f64 + (1.0 - alpha_bar).sqrt() * e as f64;
            assert!(
                (x_t[i] as f64 - expected).abs() < 1e-6,
                "{convention:?} t={step}: {} vs {expected}",
                x_t[i]
            );
        }
    }
    // Shifted, t = 0: the clean image itself.
    let s = schedule(t_max, Convention::Shifted);
    assert_eq!(s.q_sample(&[0.3, -0.7], &[5.0, 5.0], &[0]), [0.3, -0.7]);
}

#[test]
fn a_schedule_gives_one_sampler_step_per_noisy_timestep() {
    use dit_web::generate::{check_steps, max_steps};
    for (convention, max) in [(Convention::Standard, 400), (Convention::Shifted, 399)] {
        let s = schedule(400, convention);
        assert_eq!(max_steps(&s), max, "{convention:?}");
        for kind in [
            SamplerKind::DpmSolverPP,
            SamplerKind::Ddim,
            SamplerKind::Ddpm,
        ] {
            assert!(
                check_steps(&s, &config(kind, max)).is_ok(),
                "{kind:?} {max}"
            );
            let err = check_steps(&s, &config(kind, max + 1)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("give 1..={max} steps")),
                "{err}"
            );
        }
        assert!(check_steps(&s, &config(SamplerKind::DpmSolverPP, 0)).is_err());
        assert!(check_steps(&s, &config(SamplerKind::Ddpm, 0)).is_ok());
    }
}
