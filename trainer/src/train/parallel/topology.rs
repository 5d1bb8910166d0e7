//! Where a run's devices are: this machine's, and how many machines take part.

use std::time::Duration;

use burn_collective::{CollectiveConfig, PeerId};
use serde::{Deserialize, Serialize};

use super::machines::DEFAULT_PATIENCE;

/// Where a run's devices are: how many on this machine, and across how many machines.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Device indices on this machine (CUDA device numbers; the CPU backends use the default
    /// device for every worker).
    pub devices: Vec<usize>,
    /// Machines taking part (1: this one only).
    pub nodes: u32,
    /// This machine's rank among them (0 writes the run folder). With several machines, both
    /// come from MPI ([`super::Launch`]).
    pub rank: u32,
    /// How long a machine waits at a sum for the others before it ends the job.
    pub patience: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            devices: vec![0],
            nodes: 1,
            rank: 0,
            patience: DEFAULT_PATIENCE,
        }
    }
}

impl Topology {
    /// Peers in the whole run.
    pub fn world(&self) -> usize {
        self.devices.len() * self.nodes as usize
    }

    /// Whether more than one device takes part.
    pub fn is_parallel(&self) -> bool {
        self.world() > 1
    }

    /// The global peer id of this machine's `local`-th device.
    pub fn peer(&self, local: usize) -> PeerId {
        PeerId((self.rank as usize * self.devices.len() + local) as u32)
    }

    /// Whether this machine writes the run folder.
    pub fn writes(&self) -> bool {
        self.rank == 0
    }

    /// Refuses what cannot run: no devices, other than `given` devices to run on, a rank outside
    /// the nodes, a batch smaller than the peers.
    pub fn check(&self, batch: usize, given: usize) -> Result<(), String> {
        if self.devices.is_empty() {
            return Err("--devices: give at least one device".into());
        }
        if given != self.devices.len() {
            return Err(format!(
                "{given} devices to run on for a topology of {}",
                self.devices.len()
            ));
        }
        if self.nodes == 0 || self.rank >= self.nodes {
            return Err(format!(
                "rank {} is not one of {} machines",
                self.rank, self.nodes
            ));
        }
        if batch < self.world() {
            return Err(format!(
                "batch size {batch} for {} devices: every device needs at least one image",
                self.world()
            ));
        }
        Ok(())
    }

    /// The images of peer `peer` in a batch of `n`: contiguous slices whose sizes differ by at
    /// most one.
    pub fn slice(&self, peer: PeerId, n: usize) -> std::ops::Range<usize> {
        let (k, w) = (peer.0 as usize, self.world());
        k * n / w..(k + 1) * n / w
    }

    /// The collective of this machine's devices (machines are joined by [`super::machines`]).
    pub(super) fn config(&self) -> CollectiveConfig {
        CollectiveConfig::default().with_num_devices(self.devices.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_batch_in_order() {
        let t = Topology {
            devices: vec![0, 1, 2],
            ..Default::default()
        };
        let slices: Vec<_> = (0..3).map(|k| t.slice(PeerId(k), 8)).collect();
        assert_eq!(slices, [0..2, 2..5, 5..8]);
        let two = Topology {
            devices: vec![0, 1],
            nodes: 2,
            rank: 1,
            ..Default::default()
        };
        assert_eq!(two.world(), 4);
        assert_eq!(two.peer(1), PeerId(3));
        assert_eq!(two.slice(two.peer(0), 8), 4..6);
        assert!(two.check(8, 2).is_ok());
        assert!(two.check(3, 2).unwrap_err().contains("every device needs"));
        assert!(two.check(8, 1).unwrap_err().contains("1 devices to run on"));
    }
}
