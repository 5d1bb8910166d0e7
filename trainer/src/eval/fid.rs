//! The Fréchet distance between two Gaussians fitted to feature vectors (the "F" of FID):
//! `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^(1/2) S2 S1^(1/2))^(1/2))`.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance (unbiased) of a set of feature vectors.
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub mean: DVector<f64>,
    pub covariance: DMatrix<f64>,
}

impl Gaussian {
    /// Fits rows of `features` (each `dim` long; at least two rows).
    pub fn fit(features: &[Vec<f32>]) -> Self {
        let n = features.len();
        assert!(n >= 2, "a covariance needs at least two samples");
        let dim = features[0].len();
        let data = DMatrix::from_fn(n, dim, |i, j| features[i][j] as f64);
        let mean = data.row_mean().transpose();
        let centred = DMatrix::from_fn(n, dim, |i, j| data[(i, j)] - mean[j]);
        let covariance = centred.transpose() * &centred / (n as f64 - 1.0);
        Self { mean, covariance }
    }
}

/// Square root of a symmetric positive semi-definite matrix (negative rounding noise clamped).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(m.clone());
    let roots = eigen.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let root_a = sqrt_psd(&a.covariance);
    // Symmetric, so its square root's trace is the sum of the roots of its eigenvalues.
    let middle = &root_a * &b.covariance * &root_a;
    let middle = (&middle + middle.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(middle)
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    (&a.mean - &b.mean).norm_squared() + a.covariance.trace() + b.covariance.trace() - 2.0 * cross
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(mean: &[f64], diag: &[f64]) -> Gaussian {
        Gaussian {
            mean: DVector::from_column_slice(mean),
            covariance: DMatrix::from_diagonal(&DVector::from_column_slice(diag)),
        }
    }

    #[test]
    fn closed_form_for_diagonal_covariances() {
        // For diagonal covariances: |mu1-mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
        let a = gaussian(&[0.0, 1.0, 2.0], &[1.0, 4.0, 9.0]);
        let b = gaussian(&[1.0, 1.0, 0.0], &[4.0, 4.0, 1.0]);
        let expected = 1.0 + 4.0 + (1.0 - 2.0f64).powi(2) + 0.0 + (3.0 - 1.0f64).powi(2);
        assert!((frechet_distance(&a, &b) - expected).abs() < 1e-9);
        assert!(frechet_distance(&a, &a).abs() < 1e-9);
    }

    #[test]
    fn fitted_samples_of_one_distribution_are_close_and_of_two_are_far() {
        let mut rng = dit_web::diffusion::NoiseRng::new(3, 0);
        let mut draw = |shift: f32| {
            (0..4000)
                .map(|_| {
                    let mut v = vec![0f32; 4];
                    rng.fill_normal(&mut v);
                    v.iter().map(|x| x + shift).collect::<Vec<f32>>()
                })
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (draw(0.0), draw(0.0), draw(1.0));
        let (a, b, c) = (Gaussian::fit(&a), Gaussian::fit(&b), Gaussian::fit(&c));
        assert!(frechet_distance(&a, &b) < 0.05);
        // Mean shift of 1 in 4 dimensions: about 4.
        assert!((frechet_distance(&a, &c) - 4.0).abs() < 0.3);
    }
}
