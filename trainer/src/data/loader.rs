//! Shuffled mini-batches, reshuffled every epoch from the run's seed, with a resumable position.

use dit_web::diffusion::NoiseRng;
use serde::{Deserialize, Serialize};

use super::Dataset;

/// Where the loader stands: enough to continue with exactly the same batches after a restart.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderState {
    pub seed: u64,
    pub epoch: u64,
    /// Index of the next image within this epoch's order.
    pub position: usize,
}

pub struct Loader<'a, D: Dataset> {
    data: &'a D,
    state: LoaderState,
    order: Vec<usize>,
}

impl<'a, D: Dataset> Loader<'a, D> {
    pub fn new(data: &'a D, seed: u64) -> Self {
        Self::resume(
            data,
            LoaderState {
                seed,
                epoch: 0,
                position: 0,
            },
        )
    }

    pub fn resume(data: &'a D, state: LoaderState) -> Self {
        let order = epoch_order(data.len(), state.seed, state.epoch);
        Self { data, state, order }
    }

    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// The next `batch` images (`[batch * C * H * W]`, [-1, 1]) and labels; an epoch's last
    /// partial batch is dropped, as the reference does.
    pub fn next_batch(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        assert!(
            batch > 0 && batch <= self.data.len(),
            "batch size {batch} for {} images",
            self.data.len()
        );
        if self.state.position + batch > self.order.len() {
            self.state.epoch += 1;
            self.state.position = 0;
            self.order = epoch_order(self.data.len(), self.state.seed, self.state.epoch);
        }
        let n = self.data.image_len();
        let mut images = vec![0f32; batch * n];
        let labels = self.order[self.state.position..self.state.position + batch]
            .iter()
            .zip(images.chunks_mut(n))
            .map(|(&i, out)| self.data.image_into(i, out))
            .collect();
        self.state.position += batch;
        (images, labels)
    }
}

/// A Fisher-Yates shuffle of `0..len` from stream `1000 + epoch` of the seed.
fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = NoiseRng::new(seed, 1000 + epoch);
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}
