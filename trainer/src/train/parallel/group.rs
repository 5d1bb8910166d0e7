//! One machine's devices: a worker thread per device beyond the first, each with its own replica
//! of the model and of the optimizer, driven by the leader's thread through a channel of orders.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_collective::{finish_collective, register, reset_collective, CollectiveConfig, PeerId};
use dit_web::Dit;

use super::fingerprint::Fingerprint;
use super::machines::Machines;
use super::reduce::{agree, step_slice, sync_weights, Reducer};
use super::topology::Topology;
use crate::train::config::TrainConfig;
use crate::train::step::{HostBatch, StepStats};

/// A device made to fail, for tests of the failure path: local device `device` (not the leader)
/// fails in its `step`-th step, as a device that errors would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub device: usize,
    pub step: u64,
}

/// burn-collective keeps one server per backend in the process: only one data-parallel run may
/// use it at a time.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// What the leader thread asks of a follower.
enum Order {
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
    orders: Vec<Sender<Order>>,
    failed: Receiver<String>,
    /// `reset_collective` for the run's backend: wakes every peer from a pending operation when
    /// the leader ends the run early (an error), so their threads end too.
    reset: fn(),
    finished: bool,
    /// The sums across machines (multi-machine runs).
    machines: Option<Machines>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// How a follower replica is made on its device: the same network, optimizer and checkpoint as
/// the leader's (see [`super::start`]).
pub trait Replica<B: AutodiffBackend>: Sync {
    type Optim: Optimizer<Dit<B>, B>;
    fn start(&self, device: &B::Device) -> Result<(Dit<B>, Self::Optim), String>;
}

impl<'a> Group<'a> {
    /// With several machines, first joins them and checks that every one runs the job
    /// `fingerprint` describes. Then registers this thread's device as peer `topology.peer(0)`
    /// and starts one follower thread per other device in `scope`, each with a replica from
    /// `replica`. Every replica then takes the leader's weights ([`sync_weights`]), so all start
    /// equal.
    pub fn start<'scope, 'env, B, R>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        topology: &'a Topology,
        fault: Option<Fault>,
        replica: &'env R,
        devices: Vec<B::Device>,
        config: &TrainConfig,
        fingerprint: &Fingerprint,
    ) -> Result<Self, String>
    where
        B: AutodiffBackend,
        R: Replica<B>,
        'a: 'scope,
    {
        let guard = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let machines = match topology.nodes {
            1 => None,
            _ => {
                let mut machines = Machines::join(topology.patience)?;
                machines.check_same(fingerprint)?;
                Some(machines)
            }
        };
        let (grad_clip, micro) = (config.grad_clip, config.micro_batch);
        let collective = topology.config();
        let nodes = topology.nodes;
        let (fail, failed) = channel();
        let mut orders = Vec::new();
        for (local, device) in devices.into_iter().enumerate().skip(1) {
            let (send, receive) = channel();
            orders.push(send);
            let (collective, fail, peer) = (collective.clone(), fail.clone(), topology.peer(local));
            let fault = fault.filter(|f| f.device == local).map(|f| f.step);
            scope.spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let work = Work {
                        grad_clip,
                        micro,
                        fault,
                        nodes,
                    };
                    follow::<B, R>(replica, peer, device, collective, receive, work)
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
        Ok(Self {
            topology,
            orders,
            failed,
            reset: reset_collective::<B::InnerBackend>,
            finished: false,
            machines,
            _guard: guard,
        })
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

    /// How this thread sums over the whole run (across machines too, when there are several).
    fn reducer(&mut self) -> Reducer<'_> {
        Reducer {
            peer: self.topology.peer(0),
            nodes: self.topology.nodes,
            machines: self.machines.as_mut(),
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
        for (k, order) in self.orders.iter().enumerate() {
            let slice = batch.slice(self.topology.slice(self.topology.peer(k + 1), batch.len()));
            if order.send(Order::Step { slice, count, lr }).is_err() {
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
        for order in &self.orders {
            if order.send(Order::Agree).is_err() {
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
        for order in &self.orders {
            let _ = order.send(Order::Finish);
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
            // The followers' order queues close, and any that waits in an all-reduce is woken.
            self.orders.clear();
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

/// A follower: registers, takes the leader's weights, then runs the jobs it is sent.
fn follow<B: AutodiffBackend, R: Replica<B>>(
    replica: &R,
    peer: PeerId,
    device: B::Device,
    config: CollectiveConfig,
    orders: Receiver<Order>,
    work: Work,
) -> Result<(), String> {
    let (model, mut optim) = replica.start(&device)?;
    register::<B::InnerBackend>(peer, device.clone(), config).map_err(|e| format!("{e:?}"))?;
    let mut sum = Reducer {
        peer,
        nodes: work.nodes,
        machines: None,
    };
    let mut model = sync_weights(&mut sum, model)?;
    let mut steps = 0;
    for order in orders {
        match order {
            Order::Step { slice, count, lr } => {
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
            Order::Agree => {
                agree::<B::InnerBackend>(&mut sum, &device, false, 0)?;
            }
            Order::Finish => break,
        }
    }
    finish_collective::<B::InnerBackend>(peer).map_err(|e| format!("{e:?}"))
}
