//! The machines of a multi-node run, joined by MPI: every machine is one rank of a job started
//! by `mpirun` or Slurm's `srun`, and a sum across machines is one `MPI_Allreduce`.
//!
//! A machine that dies is the launcher's and MPI's to report: MPI's default error handler on the
//! world communicator (errors are fatal) and the launcher end every rank. A machine that stops
//! answering without dying (a hung device, a stopped process) is this module's: every sum runs
//! under a watchdog that ends the whole job with a message once a sum waits longer than the
//! patience given (`--peer-timeout`). Either way only machine 0 writes the run folder, through
//! atomic renames, so the last checkpoint stays whole.
//!
//! Why not burn-collective's own level across machines: in 0.21 it stops at its second
//! operation (its nodes' barrier clears a copy of the list of arrived nodes, not the list), and
//! its global broadcast is `unimplemented!`.

use std::time::Duration;

#[cfg(feature = "mpi")]
pub use with_mpi::{Launch, Machines};
#[cfg(not(feature = "mpi"))]
pub use without_mpi::{Launch, Machines};

/// Environment variables a launcher sets in the processes it starts (Open MPI's `mpirun`, PMIx
/// launchers such as `srun --mpi=pmix`, and PMI-1/2 launchers such as MPICH's `mpiexec`).
const LAUNCHER_SIZE: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"];
const LAUNCHER_RANK: [&str; 3] = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"];

/// Whether a launcher started this process.
fn launched() -> bool {
    LAUNCHER_SIZE
        .iter()
        .chain(&LAUNCHER_RANK)
        .any(|name| std::env::var_os(name).is_some())
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use mpi::collective::{CommunicatorCollectives, SystemOperation};
    use mpi::environment::{Threading, Universe};
    use mpi::topology::{Communicator, SimpleCommunicator};

    use super::launched;
    use crate::train::parallel::fingerprint::{check_table, Fingerprint};

    /// MPI for the length of a run: initialised when a launcher started this process, finalised
    /// when dropped.
    pub struct Launch {
        _universe: Universe,
    }

    impl Launch {
        /// MPI, when a launcher (`mpirun`, `srun`) started this process; `None` otherwise.
        pub fn from_env() -> Result<Option<Self>, String> {
            if !launched() {
                return Ok(None);
            }
            // Multiple: the watchdog may end the job while another thread waits in a sum.
            let (universe, _) = mpi::initialize_with_threading(Threading::Multiple)
                .ok_or("MPI was initialised twice in this process")?;
            Ok(Some(Self {
                _universe: universe,
            }))
        }

        /// Machines taking part (the world's size) and this one's rank.
        pub fn nodes_and_rank(&self) -> (u32, u32) {
            let world = SimpleCommunicator::world();
            (world.size() as u32, world.rank() as u32)
        }

        /// Ends every rank of the job after saying `why` (this rank failed).
        pub fn abort(&self, why: &str) -> ! {
            let world = SimpleCommunicator::world();
            eprintln!("error: rank {} of {}: {why}", world.rank(), world.size());
            world.abort(1)
        }
    }

    /// What the watchdog watches: the sum in flight (since when, and which) or none.
    #[derive(Default)]
    struct Watch {
        waiting: Option<(Instant, &'static str)>,
        done: bool,
    }

    /// This machine's side of the sums across machines, each under the watchdog.
    pub struct Machines {
        watch: Arc<(Mutex<Watch>, Condvar)>,
        watchdog: Option<JoinHandle<()>>,
    }

    impl Machines {
        /// Joins the job's other machines (MPI must be running: [`Launch`]), each sum allowed
        /// `patience` before the job ends.
        pub fn join(patience: Duration) -> Result<Self, String> {
            if !mpi::environment::is_initialized() {
                return Err("several machines run under an MPI launcher (mpirun, srun)".into());
            }
            let multiple = mpi::environment::threading_support() == Threading::Multiple;
            let rank = SimpleCommunicator::world().rank();
            let watch = Arc::new((Mutex::new(Watch::default()), Condvar::new()));
            let seen = watch.clone();
            let watchdog = std::thread::spawn(move || watchdog(rank, &seen, patience, multiple));
            Ok(Self {
                watch,
                watchdog: Some(watchdog),
            })
        }

        /// Runs `op` (one MPI collective) under the watchdog.
        fn watched<T>(&self, what: &'static str, op: impl FnOnce(&SimpleCommunicator) -> T) -> T {
            let (lock, wake) = &*self.watch;
            lock.lock().unwrap_or_else(|e| e.into_inner()).waiting = Some((Instant::now(), what));
            wake.notify_one();
            let out = op(&SimpleCommunicator::world());
            lock.lock().unwrap_or_else(|e| e.into_inner()).waiting = None;
            out
        }

        /// Replaces `values` by their sum over every machine (each gives as many).
        pub fn sum(&mut self, values: &mut [f32]) -> Result<(), String> {
            let mine = values.to_vec();
            self.watched("a sum of gradients", |world| {
                world.all_reduce_into(&mine[..], values, SystemOperation::sum())
            });
            Ok(())
        }

        /// Stops, naming the rank, unless every rank's `mine` equals rank 0's.
        pub fn check_same(&mut self, mine: &Fingerprint) -> Result<(), String> {
            let words = mine.words();
            let size = SimpleCommunicator::world().size() as usize;
            let mut all = vec![0u64; Fingerprint::FIELDS * size];
            self.watched("the check that every rank runs the same job", |world| {
                world.all_gather_into(&words[..], &mut all[..])
            });
            let table: Vec<Fingerprint> = all
                .chunks_exact(Fingerprint::FIELDS)
                .map(Fingerprint::from_words)
                .collect();
            check_table(&table)
        }
    }

    impl Drop for Machines {
        fn drop(&mut self) {
            let (lock, wake) = &*self.watch;
            lock.lock().unwrap_or_else(|e| e.into_inner()).done = true;
            wake.notify_one();
            if let Some(handle) = self.watchdog.take() {
                let _ = handle.join();
            }
        }
    }

    /// Ends the whole job once a sum has waited longer than `patience`.
    fn watchdog(rank: i32, watch: &(Mutex<Watch>, Condvar), patience: Duration, multiple: bool) {
        let (lock, wake) = watch;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.done {
                return;
            }
            let Some((since, what)) = state.waiting else {
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let waited = since.elapsed();
            if waited < patience {
                state = wake
                    .wait_timeout(state, patience - waited)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            eprintln!(
                "error: rank {rank} waited {} s for the other machines in {what}: one stopped \
                 answering. Ending the job (the last checkpoint is whole; --resume continues \
                 from it).",
                patience.as_secs()
            );
            if multiple {
                SimpleCommunicator::world().abort(75);
            }
            // Without MPI_THREAD_MULTIPLE another thread may not call MPI while this one waits:
            // leave without finalising, which the launcher reports and answers by ending the
            // other ranks.
            // SAFETY: `_exit` ends the process at once; nothing of this process is used after.
            unsafe { libc::_exit(75) };
        }
    }
}

#[cfg(not(feature = "mpi"))]
mod without_mpi {
    use std::time::Duration;

    use super::launched;
    use crate::train::parallel::fingerprint::Fingerprint;

    /// A build without MPI: refuses to run as one of several ranks.
    pub enum Launch {}

    impl Launch {
        /// `None`; an error when a launcher started this process as one of several.
        pub fn from_env() -> Result<Option<Self>, String> {
            let size = super::LAUNCHER_SIZE
                .iter()
                .find_map(|name| std::env::var(name).ok()?.parse::<u32>().ok());
            match launched() && size != Some(1) {
                true => Err(
                    "started by an MPI launcher, but this trainer was built without \
                             MPI: build it with `--features mpi` (needs Open MPI and libclang)"
                        .into(),
                ),
                false => Ok(None),
            }
        }

        pub fn nodes_and_rank(&self) -> (u32, u32) {
            match *self {}
        }

        pub fn abort(&self, _why: &str) -> ! {
            match *self {}
        }
    }

    /// Never made in a build without MPI.
    pub enum Machines {}

    impl Machines {
        pub fn join(_patience: Duration) -> Result<Self, String> {
            Err("several machines need a trainer built with `--features mpi`".into())
        }

        pub fn sum(&mut self, _values: &mut [f32]) -> Result<(), String> {
            match *self {}
        }

        pub fn check_same(&mut self, _mine: &Fingerprint) -> Result<(), String> {
            match *self {}
        }
    }
}

/// How long a machine waits at a sum for the others unless told (`--peer-timeout`).
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(600);
