//! What every rank of a multi-machine run must share, checked before the first step: a rank
//! started with another network or settings would otherwise train on silently wrong sums.

use crate::train::config::RunConfig;

/// What every rank must agree on before the first step: the same network, batch, seed, step to
/// start from, devices per machine, dataset size and every other training setting. Gathered from
/// every rank at the start ([`super::machines::Machines::check_same`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The first 8 bytes of the SHA-256 of the network's settings (serde JSON).
    pub network: u64,
    /// The same for the preset's name and every training setting (learning rate, steps, ...).
    pub settings: u64,
    pub batch: u64,
    pub seed: u64,
    pub step: u64,
    pub devices: u64,
    pub images: u64,
}

// Gathered and compared only in a build with MPI.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
impl Fingerprint {
    /// The job `config` from step `step` on `devices` devices per machine and `images` images.
    pub fn of(config: &RunConfig, step: u64, devices: usize, images: usize) -> Self {
        let network = serde_json::to_string(&(&config.model, &config.schedule, &config.labels))
            .unwrap_or_default();
        Self {
            network: Self::digest(&network),
            settings: Self::digest(
                &serde_json::to_string(&(&config.preset, &config.dataset, &config.train))
                    .unwrap_or_default(),
            ),
            batch: config.train.batch_size as u64,
            seed: config.train.seed,
            step,
            devices: devices as u64,
            images: images as u64,
        }
    }

    pub(super) const FIELDS: usize = 7;

    pub(super) fn words(&self) -> [u64; Self::FIELDS] {
        [
            self.network,
            self.batch,
            self.seed,
            self.step,
            self.devices,
            self.images,
            self.settings,
        ]
    }

    pub(super) fn from_words(w: &[u64]) -> Self {
        Self {
            network: w[0],
            batch: w[1],
            seed: w[2],
            step: w[3],
            devices: w[4],
            images: w[5],
            settings: w[6],
        }
    }

    /// The first 8 bytes of the SHA-256 of `text`, to compare settings across ranks.
    pub fn digest(text: &str) -> u64 {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(text.as_bytes());
        u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
    }

    /// Why rank `rank`'s `other` cannot train with rank 0's `self`, if it cannot.
    fn differs(&self, rank: usize, other: &Self) -> Option<String> {
        let what = match () {
            _ if other.network != self.network => {
                "another network (size, depth, heads, patch or classes)".to_string()
            }
            _ if other.batch != self.batch => {
                format!("batch size {} (rank 0: {})", other.batch, self.batch)
            }
            _ if other.seed != self.seed => format!("seed {} (rank 0: {})", other.seed, self.seed),
            _ if other.step != self.step => format!(
                "from step {} (rank 0: from step {}; every rank resumes from the same run folder)",
                other.step, self.step
            ),
            _ if other.devices != self.devices => format!(
                "{} devices (rank 0: {}; every machine needs as many)",
                other.devices, self.devices
            ),
            _ if other.images != self.images => {
                format!(
                    "a dataset of {} images (rank 0: {})",
                    other.images, self.images
                )
            }
            _ if other.settings != self.settings => {
                "other training settings (preset, learning rate, steps, dropout, clipping, ...)"
                    .to_string()
            }
            _ => return None,
        };
        Some(format!(
            "rank {rank} runs {what}: every rank must run the same command on the same data"
        ))
    }
}

/// Checks a gathered table of fingerprints (rank order) against rank 0's.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(super) fn check_table(table: &[Fingerprint]) -> Result<(), String> {
    let first = table.first().ok_or("no ranks")?;
    match table
        .iter()
        .enumerate()
        .find_map(|(rank, other)| first.differs(rank, other))
    {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(batch: u64) -> Fingerprint {
        Fingerprint {
            network: Fingerprint::digest("{\"hidden_size\":32}"),
            settings: Fingerprint::digest("mnist-cpu"),
            batch,
            seed: 1,
            step: 0,
            devices: 1,
            images: 40,
        }
    }

    #[test]
    fn the_first_rank_that_differs_is_named() {
        assert!(check_table(&[print(8), print(8), print(8)]).is_ok());
        let why = check_table(&[print(8), print(8), print(16)]).unwrap_err();
        assert!(
            why.contains("rank 2 runs batch size 16 (rank 0: 8)"),
            "{why}"
        );
        let mut other = print(8);
        other.network = Fingerprint::digest("{\"hidden_size\":64}");
        let why = check_table(&[print(8), other]).unwrap_err();
        assert!(why.contains("rank 1 runs another network"), "{why}");
    }
}
