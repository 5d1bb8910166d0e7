//! Improved precision and recall (Kynkäänniemi et al. 2019) in the classifier's feature space:
//! FID in two halves. Each set's manifold is the union of balls around its points, each ball
//! reaching the point's k-th nearest neighbour in the same set. Precision is the share of
//! generated points inside the real manifold (are the images realistic?), recall the share of
//! real points inside the generated one (is the real variety covered?). Compare sets of equal
//! size: the balls shrink as a set grows.

use rayon::prelude::*;

/// The paper's neighbourhood size.
pub const K: usize = 3;

/// A set of feature vectors with each point's ball: the squared distance to its K-th nearest
/// other point of the set.
pub struct Manifold {
    points: Vec<Vec<f32>>,
    radii: Vec<f64>,
}

impl Manifold {
    /// # Panics
    /// With `K` points or fewer.
    pub fn new(points: Vec<Vec<f32>>) -> Self {
        assert!(points.len() > K, "a manifold needs more than {K} points");
        let radii = points
            .par_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d: Vec<f64> = points
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, q)| distance2(p, q))
                    .collect();
                *d.select_nth_unstable_by(K - 1, f64::total_cmp).1
            })
            .collect();
        Self { points, radii }
    }

    /// The share of `points` within the ball of at least one of this manifold's points.
    fn covered(&self, points: &[Vec<f32>]) -> f64 {
        let inside = points
            .par_iter()
            .filter(|p| {
                self.points
                    .iter()
                    .zip(&self.radii)
                    .any(|(m, &r)| distance2(p, m) <= r)
            })
            .count();
        inside as f64 / points.len().max(1) as f64
    }
}

/// `(precision, recall)` of `generated` (more than `K` points) against the `real` manifold.
pub fn precision_recall(real: &Manifold, generated: Vec<Vec<f32>>) -> (f64, f64) {
    let precision = real.covered(&generated);
    let recall = Manifold::new(generated).covered(&real.points);
    (precision, recall)
}

fn distance2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{precision_recall, Manifold};
    use dit_web::diffusion::NoiseRng;

    /// `n` points of a 2-D standard normal around `(cx, 0)`.
    fn cloud(n: usize, cx: f32, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = NoiseRng::new(seed, 0);
        (0..n)
            .map(|_| {
                let mut p = [0f32; 2];
                rng.fill_normal(&mut p);
                vec![p[0] + cx, p[1]]
            })
            .collect()
    }

    #[test]
    fn the_same_distribution_scores_near_one_and_a_distant_one_zero() {
        let real = Manifold::new(cloud(400, 0.0, 1));
        let (p, r) = precision_recall(&real, cloud(400, 0.0, 2));
        assert!(p > 0.9 && r > 0.9, "same distribution: {p} {r}");
        let (p, r) = precision_recall(&real, cloud(400, 50.0, 3));
        assert_eq!((p, r), (0.0, 0.0));
    }

    #[test]
    fn dropping_a_mode_costs_recall_not_precision() {
        // Real: two modes far apart. Generated: as many points, all from the first mode.
        let real: Vec<_> = cloud(200, 0.0, 4)
            .into_iter()
            .chain(cloud(200, 20.0, 5))
            .collect();
        let (p, r) = precision_recall(&Manifold::new(real), cloud(400, 0.0, 6));
        assert!(p > 0.9, "precision {p}");
        assert!((0.4..0.6).contains(&r), "recall {r}");
    }
}
