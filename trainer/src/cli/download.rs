//! `trainer download`.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;
use dit_web::weights::Quantization;
use trainer::import_torch::reference::{self, Reference, REFERENCES};
use trainer::import_torch::remote::{default_cache, Transfer};

use super::{parse_from_str, progress_bar, Result};

/// Download MNIST (`mnist --data DIR`, checksums verified), or a reference checkpoint converted
/// into the weight file the page loads (`celeba-reference --out www/weights/celeba.safetensors`,
/// with its model card beside it). CelebA's images must be fetched by hand.
#[derive(ClapArgs)]
pub struct Args {
    /// What: mnist, or celeba-reference (the reference PyTorch DiT's published CelebA weights).
    what: String,
    /// mnist: the folder to put the files in.
    #[arg(long, required_if_eq("what", "mnist"))]
    data: Option<PathBuf>,
    /// mnist: a base URL holding <name>.gz files.
    #[arg(long, default_value = trainer::data::download::DEFAULT_MIRROR)]
    mirror: String,
    /// celeba-reference: the weight file to write; its model card goes beside it
    /// (NAME.card.json), replacing any other.
    #[arg(long, required_if_eq("what", "celeba-reference"))]
    out: Option<PathBuf>,
    /// celeba-reference: where the checkpoint is fetched from (default: where the reference
    /// publishes it).
    #[arg(long)]
    url: Option<String>,
    /// celeba-reference: the download cache (a stopped download goes on from it). Default:
    /// $XDG_CACHE_HOME/dit-web/downloads, else ~/.cache/dit-web/downloads.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// celeba-reference: f32, f16, int8 (what the page loads) or int4.
    #[arg(long, default_value = "int8", value_parser = parse_from_str::<Quantization>)]
    quant: Quantization,
}

pub fn run(args: Args) -> Result {
    if let Some(known) = REFERENCES.iter().find(|r| r.name == args.what) {
        let out = args.out.as_deref().expect("clap requires --out");
        return reference(known, &args, out);
    }
    let Some(data) = &args.data else {
        return Err(format!(
            "`{}`: expected mnist (with --data) or {}",
            args.what,
            REFERENCES.map(|r| r.name).join(", ")
        )
        .into());
    };
    for (name, fetched) in
        trainer::data::download::download_dataset(&args.what, &args.mirror, data)?
    {
        println!("{name}.gz: {fetched:?}");
    }
    Ok(())
}

fn reference(known: &Reference, args: &Args, out: &Path) -> Result {
    let url = args.url.as_deref().unwrap_or(known.url);
    let cache = args.cache.clone().unwrap_or_else(default_cache);
    let bar = progress_bar(
        0,
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
    );
    let shown = bar.clone();
    let fetched = reference::fetch(
        url,
        &cache,
        Some((known.preset)()),
        Box::new(move |t: &Transfer| {
            shown.set_message(format!("downloading {}", t.what));
            shown.set_length(t.total.max(t.done));
            shown.set_position(t.done);
        }),
    );
    bar.finish_and_clear();
    let fetched = fetched?;
    let meta = fetched.imported.file.meta.clone();
    let report = trainer::export::write(fetched.imported.file, args.quant, out)?;
    let card_path = trainer::export::write_card(out, &reference::card(known, url, meta.step))?;
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{url}: {:.1} MB checkpoint; downloaded {:.1} MB now, {:.1} MB cached in {} (the EMA weights, the zip's directory and its pickle; the raw weights and the optimizer state are not fetched where the server sends byte ranges)",
        mb(fetched.file_len),
        mb(fetched.downloaded),
        mb(fetched.cached),
        cache.display(),
    );
    println!(
        "wrote {} ({} bytes, {:?} EMA weights from step {}) and {}",
        out.display(),
        report.bytes,
        args.quant,
        meta.step,
        card_path.display()
    );
    Ok(())
}
