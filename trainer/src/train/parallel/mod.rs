//! Data-parallel training on burn-collective: one worker thread per device, each with its own
//! replica of the model and of the optimizer. Every batch is drawn once on the host (the same
//! images, noise, timesteps and labels as on one device) and cut into one slice per device; each
//! replica computes its slice's gradients, divided by the whole batch's element count, and one
//! all-reduce (a sum) gives every replica the whole batch's gradients. Each then clips and steps
//! AdamW on the same numbers, so the replicas stay equal. The leader (peer 0) keeps the EMA,
//! reads metrics back, draws sample grids and writes checkpoints.
//!
//! Several machines: an MPI launcher (`mpirun`, `srun`) starts the same command on each, and MPI
//! gives each its rank ([`Launch`]). Before the first step every rank checks that all run the
//! same job ([`Fingerprint`]). A sum is then burn-collective's all-reduce over the machine's
//! devices, the machines' totals summed by their leaders with `MPI_Allreduce` ([`machines`]),
//! and the result handed back to every device by a second local all-reduce to which only the
//! leader gives numbers. Each machine draws the whole batch itself (same seed, same data order)
//! and keeps its devices' slices; machine 0 writes the run folder.
//!
//! At every read-back of the metrics the peers also agree, with one small all-reduce, on whether to
//! stop (Ctrl-C on any node, or the leader's decision) and on the schedule's length (a time
//! budget is fitted on the leader), so they stop at the same step.

mod fingerprint;
mod group;
mod machines;
mod reduce;
mod replicas;
mod topology;

pub use fingerprint::Fingerprint;
pub use group::{Fault, Group, Replica};
pub use machines::{Launch, DEFAULT_PATIENCE};
pub(super) use replicas::Replicas;
pub use topology::Topology;
