//! `trainer shapes`.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::{parse_positive, Result};

/// Write a toy dataset in CelebA's layout: warm discs for "female", cool squares for "male".
/// A short `train --preset celeba` on it shows whether a setup learns, before the real
/// CelebA files are at hand.
#[derive(ClapArgs)]
pub struct Args {
    /// A new folder for img_align_celeba/, list_attr_celeba.txt and list_eval_partition.txt.
    #[arg(long)]
    out: PathBuf,
    /// Images (half of each label); the last tenth are the test partition.
    #[arg(long, default_value_t = 2000, value_parser = parse_positive)]
    images: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> Result {
    trainer::data::shapes::write(&args.out, args.images, args.seed)?;
    println!("wrote {} images to {}", args.images, args.out.display());
    Ok(())
}
