//! `trainer report`.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::run_dir::RunDir;

use super::Result;

/// Redraw a run's loss.png and progress.gif from its metrics and sample grids.
#[derive(ClapArgs)]
pub struct Args {
    #[arg(long)]
    run: PathBuf,
}

pub fn run(args: Args) -> Result {
    print!("{}", trainer::report::refresh(&RunDir::new(args.run))?);
    Ok(())
}
