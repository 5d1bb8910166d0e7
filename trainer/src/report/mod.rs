//! What a run leaves behind for people: metrics, sample grids.

pub mod metrics;
pub mod samples;
