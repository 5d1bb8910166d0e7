//! `trainer orchestrator`.

use clap::Args as ClapArgs;

use super::Result;

/// Connect the machines of a data-parallel run (`train --nodes N`): burn-collective's global
/// orchestrator, listening on a port every node's `--orchestrator ws://this-host:PORT` names.
/// Runs until stopped.
#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

pub fn run(args: Args) -> Result {
    eprintln!("orchestrator listening on port {}", args.port);
    tokio::runtime::Runtime::new()?.block_on(burn_collective::start_global_orchestrator(args.port));
    Ok(())
}
