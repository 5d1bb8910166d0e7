//! `--time-budget`: fit a run's schedule into a number of seconds, measured on the run itself.
//!
//! A run first lets [`CALIBRATION_STEPS`] steps go by untimed (the GPU backends compile their
//! kernels there), then times as many more, and then shortens its schedule to the steps that fit
//! the rest of the budget at that speed, so that the cosine still ends at 0. On a slow machine
//! each phase also ends after a tenth of the budget, and a budget spent before the timing ends
//! stops the run where it is.

use std::time::Instant;

/// Steps left untimed, then steps timed (at most; see the module's notes).
pub const CALIBRATION_STEPS: u64 = 50;

/// Where a run stands against its time budget.
#[derive(Debug, Clone)]
pub struct TimeBudget {
    seconds: f64,
    started: Instant,
    first_step: u64,
    /// When and at which step timing began.
    timed_from: Option<(Instant, u64)>,
    fitted: bool,
}

impl TimeBudget {
    /// A budget of `seconds` from `started`, for a call that begins at `first_step`.
    pub fn new(seconds: f64, started: Instant, first_step: u64) -> Self {
        Self {
            seconds,
            started,
            first_step,
            timed_from: None,
            fitted: false,
        }
    }

    /// Called before `step` runs, at `now`: the schedule's new total (at most `most`), once,
    /// when the timing is done or the budget is spent; `None` otherwise.
    pub fn before_step(&mut self, step: u64, now: Instant, most: u64) -> Option<u64> {
        if self.fitted {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        let phase = self.seconds / 10.0;
        match self.timed_from {
            None => {
                if step - self.first_step >= CALIBRATION_STEPS || elapsed >= phase {
                    self.timed_from = Some((now, step));
                }
            }
            Some((from, from_step)) => {
                let timed = step - from_step;
                let seconds = now.saturating_duration_since(from).as_secs_f64();
                if timed >= CALIBRATION_STEPS || seconds >= phase {
                    self.fitted = true;
                    let per_step = seconds / timed as f64;
                    return Some(fit_steps(step, self.seconds - elapsed, per_step, most));
                }
            }
        }
        // Spent before the timing ended (a very slow step): stop after at least one step.
        if elapsed >= self.seconds && step > self.first_step {
            self.fitted = true;
            return Some(step);
        }
        None
    }
}

/// The last step of a schedule that fits `left` seconds at `per_step` seconds a step from `step`
/// on, at most `most` (and at least `step`: a budget already spent stops at once).
pub fn fit_steps(step: u64, left: f64, per_step: f64, most: u64) -> u64 {
    let more = if per_step > 0.0 && left > 0.0 {
        (left / per_step).floor().min(u64::MAX as f64 / 2.0) as u64
    } else {
        0
    };
    step.saturating_add(more).min(most).max(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fit_steps_fills_the_time_left() {
        assert_eq!(fit_steps(100, 10.0, 0.1, 1_000), 200);
        assert_eq!(fit_steps(100, 10.0, 0.1, 150), 150);
        assert_eq!(fit_steps(100, -1.0, 0.1, 1_000), 100);
        assert_eq!(fit_steps(100, 5.0, 0.0, 1_000), 100);
    }

    /// Feeds `before_step` a run whose steps take `step_seconds` each (the first one
    /// `first_seconds`), until it answers; returns (step, answer).
    fn run(seconds: f64, first_seconds: f64, step_seconds: f64, most: u64) -> (u64, u64) {
        let t0 = Instant::now();
        let mut budget = TimeBudget::new(seconds, t0, 0);
        let mut now = t0;
        for step in 0..10_000 {
            if let Some(total) = budget.before_step(step, now, most) {
                assert_eq!(
                    budget.before_step(step + 1, now, most),
                    None,
                    "answers once"
                );
                return (step, total);
            }
            let took = if step == 0 {
                first_seconds
            } else {
                step_seconds
            };
            now += Duration::from_secs_f64(took);
        }
        panic!("no answer in 10,000 steps");
    }

    #[test]
    fn a_fast_run_times_steps_50_to_100_and_fills_the_rest() {
        // 300 s at 0.125 s a step (the first, compiling, 5 s): 50 untimed steps take 11.125 s,
        // 50 timed 6.25 s; 282.625 s are left at step 100: 2,261 more steps.
        assert_eq!(run(300.0, 5.0, 0.125, 1_000_000), (100, 100 + 2_261));
        // --steps stays the most.
        assert_eq!(run(300.0, 5.0, 0.125, 500), (100, 500));
    }

    #[test]
    fn a_slow_run_times_a_tenth_of_the_budget_each_phase() {
        // 100 s at 4 s a step: timing starts at step 3 (12 s > 10 s), ends at step 6 (12 s);
        // 76 s left: 19 more steps.
        assert_eq!(run(100.0, 4.0, 4.0, 1_000_000), (6, 25));
    }

    #[test]
    fn a_budget_spent_before_the_timing_ends_stops_after_one_step() {
        // The first step takes longer than the whole budget.
        assert_eq!(run(10.0, 30.0, 1.0, 1_000_000), (1, 1));
    }
}
