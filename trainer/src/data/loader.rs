//! Shuffled mini-batches, reshuffled every epoch from the run's seed, decoded on worker threads,
//! with a resumable position. Images that cannot be decoded are skipped, counted and reported.
//! [`Prefetcher`] decodes the next batches on a thread of its own while the current one trains.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::Scope;

use dit_web::diffusion::NoiseRng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;

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

/// Where training gets its batches: a [`Loader`] directly, or a [`Prefetcher`] in front of one.
pub trait Batches {
    /// The next `batch` images (`[batch * C * H * W]`, [-1, 1]) and labels.
    fn next_batch(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>);
    /// The position after the last batch handed out: a checkpoint stores it.
    fn state(&self) -> LoaderState;
    /// Images skipped so far, and the first few reasons.
    fn skipped(&self) -> (u64, &[String]);
}

impl<D: Dataset> Batches for Loader<'_, D> {
    fn next_batch(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        Loader::next_batch(self, batch)
    }
    fn state(&self) -> LoaderState {
        Loader::state(self)
    }
    fn skipped(&self) -> (u64, &[String]) {
        Loader::skipped(self)
    }
}

/// One prefetched batch and the loader's bookkeeping right after it.
struct Prefetched {
    images: Vec<f32>,
    labels: Vec<usize>,
    state: LoaderState,
    skipped: u64,
    reasons: Vec<String>,
}

/// A [`Loader`] running `depth` batches ahead on its own thread, so the device never waits for
/// JPEG decoding. It hands out exactly the batches the loader would, and its [`Batches::state`]
/// is the loader's state after the last batch handed out, so checkpoints resume the same way.
/// Every batch has the size given to [`Prefetcher::spawn`].
pub struct Prefetcher {
    batches: Receiver<Prefetched>,
    batch: usize,
    state: LoaderState,
    skipped: u64,
    reasons: Vec<String>,
}

impl Prefetcher {
    /// Moves `loader` onto a thread of `scope`. The thread stops when the prefetcher is dropped.
    pub fn spawn<'scope, 'env, D: Dataset>(
        scope: &'scope Scope<'scope, 'env>,
        mut loader: Loader<'env, D>,
        batch: usize,
        depth: usize,
    ) -> Self {
        let state = loader.state();
        let (sender, batches) = sync_channel(depth.max(1));
        scope.spawn(move || loop {
            let (images, labels) = loader.next_batch(batch);
            let (skipped, reasons) = loader.skipped();
            let next = Prefetched {
                images,
                labels,
                state: loader.state(),
                skipped,
                reasons: reasons.to_vec(),
            };
            if sender.send(next).is_err() {
                break; // the prefetcher was dropped
            }
        });
        Self {
            batches,
            batch,
            state,
            skipped: 0,
            reasons: Vec::new(),
        }
    }
}

impl Batches for Prefetcher {
    /// # Panics
    /// If `batch` is not the size the prefetcher was made for, or if the loader thread panicked
    /// (its message is printed first).
    fn next_batch(&mut self, batch: usize) -> (Vec<f32>, Vec<usize>) {
        assert_eq!(
            batch, self.batch,
            "the prefetcher makes batches of {}",
            self.batch
        );
        let next = self
            .batches
            .recv()
            .expect("the data loader thread stopped (see its message above)");
        self.state = next.state;
        self.skipped = next.skipped;
        self.reasons = next.reasons;
        (next.images, next.labels)
    }
    fn state(&self) -> LoaderState {
        self.state
    }
    fn skipped(&self) -> (u64, &[String]) {
        (self.skipped, &self.reasons)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Images whose pixels are their index; every fifth one fails to decode.
    struct Numbered(usize);

    impl Dataset for Numbered {
        fn len(&self) -> usize {
            self.0
        }
        fn image_len(&self) -> usize {
            2
        }
        fn image_into(&self, index: usize, out: &mut [f32]) -> Result<usize, String> {
            if index % 5 == 4 {
                return Err(format!("image {index} is corrupt"));
            }
            out.fill(index as f32);
            Ok(index % 3)
        }
    }

    #[test]
    fn prefetcher_hands_out_the_loaders_batches_and_states() {
        let data = Numbered(23);
        let mut direct = Loader::new(&data, 7);
        std::thread::scope(|scope| {
            let mut ahead = Prefetcher::spawn(scope, Loader::new(&data, 7).with_workers(2), 4, 2);
            for _ in 0..15 {
                assert_eq!(ahead.next_batch(4), direct.next_batch(4));
                assert_eq!(Batches::state(&ahead), direct.state());
                assert_eq!(Batches::skipped(&ahead).0, direct.skipped().0);
            }
            assert!(direct.skipped().0 > 0, "the fixture skips images");
        });
    }
}
