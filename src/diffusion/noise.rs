use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where a [`NoiseRng`] stands, for checkpoints that resume exactly.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct NoiseState {
    pub seed: u64,
    pub stream: u64,
    /// Position in the ChaCha stream, in 32-bit words.
    pub word_pos: u128,
    pub spare: Option<f32>,
}

/// Portable seeded Gaussian noise: ChaCha8 (a documented, platform-independent stream) turned
/// into normals by Box-Muller with `libm`'s pure-Rust maths, so native and wasm draw the same
/// bits. Each image of a batch has its own stream, so an image does not depend on its neighbours.
#[derive(Clone, Debug)]
pub struct NoiseRng {
    rng: ChaCha8Rng,
    seed: u64,
    spare: Option<f32>,
}

impl NoiseRng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self {
            rng,
            seed,
            spare: None,
        }
    }

    pub fn state(&self) -> NoiseState {
        NoiseState {
            seed: self.seed,
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
            spare: self.spare,
        }
    }

    pub fn from_state(state: &NoiseState) -> Self {
        let mut rng = Self::new(state.seed, state.stream);
        rng.rng.set_word_pos(state.word_pos);
        rng.spare = state.spare;
        rng
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (for shuffles and timestep draws); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the bias is below 2^-32 for the sizes used here.
        (((self.rng.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// A standard normal sample.
    pub fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let theta = 2.0 * core::f64::consts::PI * u2;
        self.spare = Some((r * libm::sin(theta)) as f32);
        (r * libm::cos(theta)) as f32
    }

    pub fn fill_normal(&mut self, out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = self.normal());
    }
}

/// Fresh per-image Gaussian noise for the stochastic samplers.
pub(crate) struct NoiseSource<'a> {
    pub rngs: &'a mut [NoiseRng],
    pub image_len: usize,
}

impl NoiseSource<'_> {
    /// One standard-normal value per element of the batch, image `i` from its own stream.
    pub(crate) fn draw(self) -> Vec<f32> {
        let mut out = vec![0f32; self.rngs.len() * self.image_len];
        for (rng, image) in self.rngs.iter_mut().zip(out.chunks_mut(self.image_len)) {
            rng.fill_normal(image);
        }
        out
    }
}
