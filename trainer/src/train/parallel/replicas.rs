//! What the training loop sees of its devices: the leader's alone, or this machine's group.

use burn::tensor::backend::AutodiffBackend;
use dit_web::Dit;

use super::fingerprint::Fingerprint;
use super::group::{Fault, Group, Replica};
use super::topology::Topology;
use crate::train::config::TrainConfig;
use crate::train::error::TrainError;
use crate::train::optim::Adam;
use crate::train::step::{optimizer_step, HostBatch, StepStats};

/// This machine's devices: the leader's alone, or a data-parallel group ([`parallel`]).
pub(in crate::train) struct Replicas<'a, B: AutodiffBackend> {
    device: B::Device,
    group: Option<Group<'a>>,
    micro: usize,
    grad_clip: Option<f64>,
}

impl<'a, B: AutodiffBackend> Replicas<'a, B> {
    pub fn start<'scope, 'env, R: Replica<B>>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        topology: &'a Topology,
        fault: Option<Fault>,
        follower: &'env R,
        devices: &[B::Device],
        config: &TrainConfig,
        fingerprint: &Fingerprint,
    ) -> Result<Self, TrainError>
    where
        'a: 'scope,
    {
        let group = match topology.is_parallel() {
            false => None,
            true => Some(
                Group::start::<B, _>(
                    scope,
                    topology,
                    fault,
                    follower,
                    devices.to_vec(),
                    config,
                    fingerprint,
                )
                .map_err(TrainError::Parallel)?,
            ),
        };
        Ok(Self {
            device: devices[0].clone(),
            group,
            micro: config.micro_batch,
            grad_clip: config.grad_clip,
        })
    }

    /// The leader's weights on every device.
    pub fn join(&mut self, model: Dit<B>) -> Result<Dit<B>, TrainError> {
        match &mut self.group {
            None => Ok(model),
            Some(group) => group
                .join(&self.device, model)
                .map_err(TrainError::Parallel),
        }
    }

    pub fn step(
        &mut self,
        model: Dit<B>,
        optim: &mut Adam<B>,
        batch: HostBatch,
        lr: f64,
    ) -> Result<(Dit<B>, StepStats<B::InnerBackend>), TrainError> {
        let (micro, clip) = (self.micro, self.grad_clip);
        match self.group.as_mut() {
            None => {
                let batch = batch.upload(&self.device);
                Ok(optimizer_step(model, optim, batch, micro, lr, clip))
            }
            Some(group) => group
                .step(model, optim, &batch, &self.device, micro, lr, clip)
                .map_err(TrainError::Parallel),
        }
    }

    /// Whether any device stops, and the leader's schedule length.
    pub fn agree(&mut self, stop: bool, total: u64) -> Result<(bool, u64), TrainError> {
        match self.group.as_mut() {
            None => Ok((stop, total)),
            Some(group) => group
                .agree::<B::InnerBackend>(&self.device, stop, total)
                .map_err(TrainError::Parallel),
        }
    }

    pub fn finish(self) -> Result<(), TrainError> {
        match self.group {
            None => Ok(()),
            Some(group) => group
                .finish::<B::InnerBackend>()
                .map_err(TrainError::Parallel),
        }
    }
}
