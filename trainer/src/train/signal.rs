//! Ctrl-C and SIGTERM during training: the first asks the run to stop after the step in flight
//! (which is then checkpointed); a second, a second or more later, ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A second signal ends the process only this long after the first: GNU `timeout` and `kill 0`
/// send theirs to the process and to its group, so one request can arrive twice in an instant.
const REPEAT: Duration = Duration::from_secs(1);

/// Raised by the first SIGINT or SIGTERM.
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Starts listening for SIGINT and SIGTERM (on a thread of its own: the signal handler itself
    /// only wakes it).
    pub fn on_signals() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::iterator::Signals;
        let flag = Arc::new(AtomicBool::new(false));
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let raised = Arc::clone(&flag);
        std::thread::spawn(move || {
            let mut first: Option<Instant> = None;
            for _ in signals.forever() {
                match first {
                    None => {
                        first = Some(Instant::now());
                        raised.store(true, Ordering::Relaxed);
                    }
                    Some(at) if at.elapsed() >= REPEAT => std::process::exit(130),
                    Some(_) => {}
                }
            }
        });
        Ok(Self(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
