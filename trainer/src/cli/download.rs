//! `trainer download`.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::Result;

/// Download a dataset, verifying checksums (MNIST only; CelebA must be fetched by hand).
#[derive(ClapArgs)]
pub struct Args {
    /// Which dataset: mnist.
    dataset: String,
    /// Folder to put the files in.
    #[arg(long)]
    data: PathBuf,
    /// Base URL holding <name>.gz files.
    #[arg(long, default_value = trainer::data::download::DEFAULT_MIRROR)]
    mirror: String,
}

pub fn run(args: Args) -> Result {
    for (name, fetched) in
        trainer::data::download::download_dataset(&args.dataset, &args.mirror, &args.data)?
    {
        println!("{name}.gz: {fetched:?}");
    }
    Ok(())
}
