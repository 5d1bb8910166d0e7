//! Shuffled mini-batches, reshuffled every epoch from the run's seed, decoded on worker threads,
//! with a resumable position. Images that cannot be decoded are skipped, counted and reported.

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

impl LoaderState {
    /// The start of a run: epoch 0, first image.
    pub fn start(seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            position: 0,
        }
    }
}

pub struct Loader<'a, D: Dataset> {
    data: &'a D,
    state: LoaderState,
    order: Vec<usize>,
    workers: usize,
    skipped: u64,
    skip_reasons: Vec<String>,
}

/// How many skip reasons are kept for the report.
const KEEP_REASONS: usize = 10;

impl<'a, D: Dataset> Loader<'a, D> {
    pub fn new(data: &'a D, seed: u64) -> Self {
        Self::resume(data, LoaderState::start(seed))
    }

    pub fn resume(data: &'a D, state: LoaderState) -> Self {
        let order = epoch_order(data.len(), state.seed, state.epoch);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            data,
            state,
            order,
            workers,
            skipped: 0,
            skip_reasons: Vec::new(),
        }
    }

    /// Decoding threads (default: one per core).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Images skipped so far, and the first few reasons.
    pub fn skipped(&self) -> (u64, &[String]) {
        (self.skipped, &self.skip_reasons)
    }

    /// The next `batch` images (`[batch * C * H * W]`, [-1, 1]) and labels. An epoch's last
    /// partial batch is dropped, as the reference does; skipped images are replaced by the next.
    ///
    /// # Panics
    /// If `batch` is zero or larger than the dataset, or if a whole epoch fails to decode.
    pub fn next_batch(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        assert!(
            batch > 0 && batch <= self.data.len(),
            "batch size {batch} for {} images",
            self.data.len()
        );
        let n = self.data.image_len();
        let mut images = vec![0f32; batch * n];
        let mut labels = Vec::with_capacity(batch);
        let mut failures_in_a_row = 0;
        while labels.len() < batch {
            let need = batch - labels.len();
            if self.state.position + need > self.order.len() {
                self.state.epoch += 1;
                self.state.position = 0;
                self.order = epoch_order(self.data.len(), self.state.seed, self.state.epoch);
            }
            let indices = &self.order[self.state.position..self.state.position + need];
            self.state.position += need;
            let start = labels.len();
            let results = decode(self.data, indices, &mut images[start * n..], self.workers);
            // Compact: successful images move down over the holes left by skipped ones.
            for (k, result) in results.into_iter().enumerate() {
                match result {
                    Ok(label) => {
                        let (from, to) = ((start + k) * n, labels.len() * n);
                        if from != to {
                            images.copy_within(from..from + n, to);
                        }
                        labels.push(label);
                        failures_in_a_row = 0;
                    }
                    Err(reason) => {
                        self.skipped += 1;
                        failures_in_a_row += 1;
                        if self.skip_reasons.len() < KEEP_REASONS {
                            self.skip_reasons.push(reason);
                        }
                        assert!(
                            failures_in_a_row <= self.data.len(),
                            "no image of the dataset could be read: {:?}",
                            self.skip_reasons
                        );
                    }
                }
            }
        }
        (images, labels)
    }
}

/// Decodes `indices` into consecutive slots of `out`, split across `workers` threads.
fn decode<D: Dataset>(
    data: &D,
    indices: &[usize],
    out: &mut [f32],
    workers: usize,
) -> Vec<Result<usize, String>> {
    let n = data.image_len();
    let out = &mut out[..indices.len() * n];
    let per_worker = indices.len().div_ceil(workers.max(1));
    if workers <= 1 || indices.len() <= 1 {
        return indices
            .iter()
            .zip(out.chunks_mut(n))
            .map(|(&i, o)| data.image_into(i, o))
            .collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(per_worker)
            .zip(out.chunks_mut(per_worker * n))
            .map(|(idx, o)| {
                scope.spawn(move || {
                    idx.iter()
                        .zip(o.chunks_mut(n))
                        .map(|(&i, o)| data.image_into(i, o))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a decoding thread panicked"))
            .collect()
    })
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
