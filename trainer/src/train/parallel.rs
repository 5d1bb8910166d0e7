//! Data-parallel training on burn-collective: one worker thread per device, each with its own
//! replica of the model and of the optimizer. Every batch is drawn once on the host (the same
//! images, noise, timesteps and labels as on one device) and cut into one slice per device; each
//! replica computes its slice's gradients, divided by the whole batch's element count, and one
//! all-reduce (a sum) gives every replica the whole batch's gradients. Each then clips and steps
//! AdamW on the same numbers, so the replicas stay equal. The leader (peer 0) keeps the EMA,
//! reads metrics back, draws sample grids and writes checkpoints.
//!
//! Several machines: each runs the same command with its rank and the address of machine 0. A sum
//! is then burn-collective's all-reduce over the machine's devices, the machines' totals summed
//! over TCP by their leaders ([`super::mesh`]), and the result handed back to every device by a
//! second local all-reduce to which only the leader gives numbers. Each machine draws the whole
//! batch itself (same seed, same data order) and keeps its devices' slices; machine 0 writes the
//! run folder.
//!
//! At every read-back of the metrics the peers also agree, with one small all-reduce, on whether to
//! stop (Ctrl-C on any node, or the leader's decision) and on the schedule's length (a time
//! budget is fitted on the leader), so they stop at the same step.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    all_reduce, finish_collective, register, reset_collective, CollectiveConfig, PeerId,
    ReduceOperation,
};
use dit_web::Dit;
use serde::{Deserialize, Serialize};

use super::mesh::Mesh;
use super::step::{clip_global_norm, param_ids, slice_gradients, HostBatch, StepStats};

/// Where a run's devices are: how many on this machine, and across how many machines.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Device indices on this machine (CUDA device numbers; the CPU backends use the default
    /// device for every worker).
    pub devices: Vec<usize>,
    /// Machines taking part (1: this one only).
    pub nodes: u32,
    /// This machine's rank among them (0 writes the run folder).
    pub rank: u32,
    /// `host:port` where machine 0 listens for the others, when `nodes` > 1.
    pub master: Option<String>,
    /// For tests of the failure path: local device `.0` (not the leader) fails in its `.1`-th
    /// step, as a device that errors would.
    #[serde(skip)]
    pub fault: Option<(usize, u64)>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            devices: vec![0],
            nodes: 1,
            rank: 0,
            master: None,
            fault: None,
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
    /// the nodes, several nodes without the addresses, a batch smaller than the peers.
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
                "--node-rank {} is not one of {} nodes",
                self.rank, self.nodes
            ));
        }
        if self.nodes > 1 && self.master.is_none() {
            return Err("several machines need --master HOST:PORT (machine 0's address)".into());
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

    /// The collective of this machine's devices (machines are joined by [`super::mesh`]).
    fn config(&self) -> CollectiveConfig {
        CollectiveConfig::default().with_num_devices(self.devices.len())
    }
}

/// burn-collective keeps one server per backend in the process: only one data-parallel run may
/// use it at a time.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// What the leader thread asks of a follower.
enum Job {
    /// Compute this slice's gradients (`count`: the whole batch's elements) and take the
    /// optimizer step.
    Step {
        slice: HostBatch,
        count: usize,
        lr: f64,
    },
    /// Take part in the agreement at a read-back (a follower never asks to stop itself).
    Agree,
    /// Leave the collective and end.
    Finish,
}

/// The devices of one machine: the calling thread drives its own device (the leader of this
/// node) and sends each follower thread its jobs.
pub struct Group<'a> {
    topology: &'a Topology,
    jobs: Vec<Sender<Job>>,
    failed: Receiver<String>,
    /// `reset_collective` for the run's backend: wakes every peer from a pending operation when
    /// the leader ends the run early (an error), so their threads end too.
    reset: fn(),
    finished: bool,
    /// The links to the other machines (multi-machine runs).
    mesh: Option<Mesh>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// How a follower replica is made on its device: the same network, optimizer and checkpoint as
/// the leader's (see [`super::start`]).
pub trait Replica<B: AutodiffBackend>: Sync {
    type Optim: Optimizer<Dit<B>, B>;
    fn start(&self, device: &B::Device) -> Result<(Dit<B>, Self::Optim), String>;
}

impl<'a> Group<'a> {
    /// Registers this thread's device as peer `topology.peer(0)` and starts one follower thread
    /// per other device in `scope`, each with a replica from `replica`. Every replica then takes
    /// the leader's weights ([`sync_weights`]), so all start equal.
    pub fn start<'scope, 'env, B, R>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        topology: &'a Topology,
        replica: &'env R,
        devices: Vec<B::Device>,
        grad_clip: Option<f64>,
        micro: usize,
    ) -> Result<Self, String>
    where
        B: AutodiffBackend,
        R: Replica<B>,
        'a: 'scope,
    {
        let guard = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let config = topology.config();
        let nodes = topology.nodes;
        let (fail, failed) = channel();
        let mut jobs = Vec::new();
        for (local, device) in devices.into_iter().enumerate().skip(1) {
            let (send, receive) = channel();
            jobs.push(send);
            let (config, fail, peer) = (config.clone(), fail.clone(), topology.peer(local));
            let fault = topology.fault.filter(|f| f.0 == local).map(|f| f.1);
            scope.spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let work = Work {
                        grad_clip,
                        micro,
                        fault,
                        nodes,
                    };
                    follow::<B, R>(replica, peer, device, config, receive, work)
                }));
                let error = match outcome {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(panic) => panic_message(&panic),
                };
                // Wake the other peers from any operation they wait in, then say why.
                reset_quietly(reset_collective::<B::InnerBackend>);
                let _ = fail.send(format!("device {local}: {error}"));
            });
        }
        let mut group = Self {
            topology,
            jobs,
            failed,
            reset: reset_collective::<B::InnerBackend>,
            finished: false,
            mesh: None,
            _guard: guard,
        };
        if nodes > 1 {
            let master = topology.master.as_deref().unwrap_or_default();
            let mesh = Mesh::join(master, nodes, topology.rank)
                .map_err(|e| format!("joining the other machines at {master}: {e}"))?;
            group.mesh = Some(mesh);
        }
        Ok(group)
    }

    /// Registers the leader's own device and brings `model` to the leader's weights everywhere.
    pub fn join<B: AutodiffBackend>(
        &mut self,
        device: &B::Device,
        model: Dit<B>,
    ) -> Result<Dit<B>, String> {
        let peer = self.topology.peer(0);
        register::<B::InnerBackend>(peer, device.clone(), self.topology.config())
            .map_err(|e| self.why(e))?;
        let mut sum = self.reducer();
        let synced = sync_weights(&mut sum, model);
        synced.map_err(|e| self.why(e))
    }

    /// How this thread sums over the whole run (its mesh, when there are other machines).
    fn reducer(&mut self) -> Reducer<'_> {
        Reducer {
            peer: self.topology.peer(0),
            nodes: self.topology.nodes,
            mesh: self.mesh.as_mut(),
        }
    }

    /// One optimizer step of the whole batch: each follower takes its slice, this thread its own.
    #[allow(clippy::too_many_arguments)]
    pub fn step<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
        &mut self,
        model: Dit<B>,
        optim: &mut O,
        batch: &HostBatch,
        device: &B::Device,
        micro: usize,
        lr: f64,
        grad_clip: Option<f64>,
    ) -> Result<(Dit<B>, StepStats<B::InnerBackend>), String> {
        let count = batch.eps.len();
        for (k, job) in self.jobs.iter().enumerate() {
            let slice = batch.slice(self.topology.slice(self.topology.peer(k + 1), batch.len()));
            if job.send(Job::Step { slice, count, lr }).is_err() {
                return Err(self.failure());
            }
        }
        let mine = batch.slice(self.topology.slice(self.topology.peer(0), batch.len()));
        let mut sum = self.reducer();
        let stepped = step_slice(
            &mut sum, model, optim, mine, device, count, micro, lr, grad_clip,
        );
        stepped.map_err(|e| self.why(e))
    }

    /// At a read-back: every peer learns whether any asked to stop, and the leader's schedule
    /// length (`total`, from its time budget). Returns (stop, total).
    pub fn agree<B: Backend>(
        &mut self,
        device: &B::Device,
        stop: bool,
        total: u64,
    ) -> Result<(bool, u64), String> {
        for job in &self.jobs {
            if job.send(Job::Agree).is_err() {
                return Err(self.failure());
            }
        }
        let total = if self.topology.writes() { total } else { 0 };
        let mut sum = self.reducer();
        let agreed = agree::<B>(&mut sum, device, stop, total);
        agreed.map_err(|e| self.why(e))
    }

    /// Ends the followers and leaves the collective.
    pub fn finish<B: Backend>(mut self) -> Result<(), String> {
        for job in &self.jobs {
            let _ = job.send(Job::Finish);
        }
        self.finished = true;
        finish_collective::<B>(self.topology.peer(0)).map_err(|e| format!("{e:?}"))
    }

    /// Why the run failed: a follower's own error if one failed, else `error`.
    fn why(&self, error: impl std::fmt::Debug) -> String {
        self.failed
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap_or_else(|_| format!("data-parallel step failed: {error:?}"))
    }

    fn failure(&self) -> String {
        self.why("a device thread ended")
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // The followers' job queues close, and any that waits in an all-reduce is woken.
            self.jobs.clear();
            reset_quietly(self.reset);
        }
    }
}

/// Resets the collective server; one that is already gone (it failed first) panics on the way,
/// which must not turn an error into a second panic.
fn reset_quietly(reset: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(reset);
    std::panic::set_hook(previous);
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// How a follower steps, the machines of the run, and the step it fails in (tests only).
struct Work {
    grad_clip: Option<f64>,
    micro: usize,
    fault: Option<u64>,
    nodes: u32,
}

/// How a peer sums over the whole run: burn-collective's all-reduce over this machine's devices,
/// then, with several machines, the machines' totals over the leader's mesh, handed back to every
/// device by a second all-reduce to which only the leader gives numbers (a sum with zeros is
/// exact).
struct Reducer<'m> {
    peer: PeerId,
    nodes: u32,
    /// The leader's links to the other machines; `None` on followers.
    mesh: Option<&'m mut Mesh>,
}

impl Reducer<'_> {
    fn sum<B: Backend>(&mut self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, String> {
        let reduce = |peer, t: Tensor<B, 1>| {
            all_reduce::<B>(peer, t.into_primitive().tensor(), ReduceOperation::Sum)
                .map(|t| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t)))
                .map_err(|e| format!("{e:?}"))
        };
        let local = reduce(self.peer, tensor)?;
        if self.nodes == 1 {
            return Ok(local);
        }
        let mine = match self.mesh.as_mut() {
            Some(mesh) => {
                let device = local.device();
                let mut values = local
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?;
                mesh.sum(&mut values)
                    .map_err(|e| format!("summing across machines: {e}"))?;
                let n = values.len();
                Tensor::from_data(TensorData::new(values, [n]), &device)
            }
            None => local.zeros_like(),
        };
        reduce(self.peer, mine)
    }
}

/// A follower: registers, takes the leader's weights, then runs the jobs it is sent.
fn follow<B: AutodiffBackend, R: Replica<B>>(
    replica: &R,
    peer: PeerId,
    device: B::Device,
    config: CollectiveConfig,
    jobs: Receiver<Job>,
    work: Work,
) -> Result<(), String> {
    let (model, mut optim) = replica.start(&device)?;
    register::<B::InnerBackend>(peer, device.clone(), config).map_err(|e| format!("{e:?}"))?;
    let mut sum = Reducer {
        peer,
        nodes: work.nodes,
        mesh: None,
    };
    let mut model = sync_weights(&mut sum, model)?;
    let mut steps = 0;
    for job in jobs {
        match job {
            Job::Step { slice, count, lr } => {
                steps += 1;
                if work.fault == Some(steps) {
                    return Err(format!("failed in step {steps} (an injected fault)"));
                }
                let (next, _) = step_slice(
                    &mut sum,
                    model,
                    &mut optim,
                    slice,
                    &device,
                    count,
                    work.micro,
                    lr,
                    work.grad_clip,
                )?;
                model = next;
            }
            Job::Agree => {
                agree::<B::InnerBackend>(&mut sum, &device, false, 0)?;
            }
            Job::Finish => break,
        }
    }
    finish_collective::<B::InnerBackend>(peer).map_err(|e| format!("{e:?}"))
}

/// One replica's part of a step: its slice's gradients, summed with every other replica's by one
/// all-reduce (the loss travels in the same tensor), then clipping and AdamW.
#[allow(clippy::too_many_arguments)]
fn step_slice<B: AutodiffBackend, O: Optimizer<Dit<B>, B>>(
    sum: &mut Reducer<'_>,
    model: Dit<B>,
    optim: &mut O,
    slice: HostBatch,
    device: &B::Device,
    count: usize,
    micro: usize,
    lr: f64,
    grad_clip: Option<f64>,
) -> Result<(Dit<B>, StepStats<B::InnerBackend>), String> {
    let (grads, loss) = slice_gradients(&model, slice.upload::<B>(device), micro, count);
    let (grads, loss) = all_reduce_gradients(sum, &model, grads, loss)?;
    let (grads, grad_norm) = clip_global_norm(grads, &model, grad_clip);
    Ok((optim.step(lr, model, grads), StepStats { loss, grad_norm }))
}

/// Sums every replica's gradients (and losses) with one all-reduce of one flat tensor.
fn all_reduce_gradients<B: AutodiffBackend>(
    sum: &mut Reducer<'_>,
    model: &Dit<B>,
    mut grads: GradientsParams,
    loss: Tensor<B::InnerBackend, 1>,
) -> Result<(GradientsParams, Tensor<B::InnerBackend, 1>), String> {
    let ids = param_ids(model);
    let mut parts: Vec<Tensor<B::InnerBackend, 1>> = Vec::new();
    let mut layout = Vec::new();
    macro_rules! take {
        ($id:expr, $d:literal) => {
            if let Some(g) = grads.remove::<B::InnerBackend, $d>($id) {
                let dims = g.dims().to_vec();
                layout.push(($id, $d, dims));
                parts.push(g.flatten::<1>(0, $d - 1));
            }
        };
    }
    for &(id, rank) in &ids {
        match rank {
            1 => take!(id, 1),
            2 => take!(id, 2),
            3 => take!(id, 3),
            4 => take!(id, 4),
            _ => unreachable!("DiT parameters have rank 1 to 4"),
        }
    }
    parts.push(loss);
    let summed = sum.sum(Tensor::cat(parts, 0))?;
    let mut offset = 0;
    macro_rules! put {
        ($id:expr, $dims:expr, $d:literal) => {{
            let n: usize = $dims.iter().product();
            let part = summed.clone().slice(offset..offset + n);
            offset += n;
            let shape: [usize; $d] = $dims.as_slice().try_into().expect("rank");
            grads.register::<B::InnerBackend, $d>($id, part.reshape(shape));
        }};
    }
    for (id, rank, dims) in layout {
        match rank {
            1 => put!(id, dims, 1),
            2 => put!(id, dims, 2),
            3 => put!(id, dims, 3),
            4 => put!(id, dims, 4),
            _ => unreachable!("DiT parameters have rank 1 to 4"),
        }
    }
    let loss = summed.slice(offset..offset + 1);
    Ok((grads, loss))
}

/// One all-reduce of `[stop, total]`: whether any peer asked to stop, and the leader's schedule
/// length (the others give 0).
fn agree<B: Backend>(
    sum: &mut Reducer<'_>,
    device: &B::Device,
    stop: bool,
    total: u64,
) -> Result<(bool, u64), String> {
    let flags = Tensor::<B, 1>::from_floats([f32::from(u8::from(stop)), total as f32], device);
    let values = sum
        .sum(flags)?
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 after convert");
    Ok((values[0] > 0.0, values[1].round() as u64))
}

/// Peer 0's weights on every replica: every parameter as one flat tensor, summed across the peers
/// with every peer but 0 giving zeros (a sum with zeros is exact, and it crosses machines the way
/// every other sum does).
fn sync_weights<B: AutodiffBackend>(
    sum: &mut Reducer<'_>,
    model: Dit<B>,
) -> Result<Dit<B>, String> {
    struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().inner().flatten::<1>(0, D - 1));
        }
    }
    let mut flat = Flatten::<B::InnerBackend>(Vec::new());
    model.visit(&mut flat);
    let mut mine = Tensor::cat(flat.0, 0);
    if sum.peer.0 != 0 {
        mine = mine.zeros_like();
    }
    let weights = sum.sum(mine)?;

    /// Sets every parameter from the flat tensor, in the visitor's order.
    struct Unflatten<B: Backend> {
        weights: Tensor<B, 1>,
        offset: usize,
    }
    impl<B: AutodiffBackend> ModuleMapper<B> for Unflatten<B::InnerBackend> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let n: usize = dims.iter().product();
            let part = self.weights.clone().slice(self.offset..self.offset + n);
            self.offset += n;
            let value = Tensor::<B, D>::from_inner(part.reshape(dims))
                .set_require_grad(tensor.is_require_grad());
            Param::from_mapped_value(id, value, mapper)
        }
    }
    Ok(model.map(&mut Unflatten { weights, offset: 0 }))
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
            master: Some("a:1".into()),
            fault: None,
        };
        assert_eq!(two.world(), 4);
        assert_eq!(two.peer(1), PeerId(3));
        assert_eq!(two.slice(two.peer(0), 8), 4..6);
        assert!(two.check(8, 2).is_ok());
        assert!(two.check(3, 2).unwrap_err().contains("every device needs"));
        assert!(two.check(8, 1).unwrap_err().contains("1 devices to run on"));
    }
}
