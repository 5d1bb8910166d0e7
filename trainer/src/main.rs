//! `trainer`: the command line. Each command's arguments and its call into the `trainer` library
//! live in `cli/<command>.rs`; this file only dispatches and turns errors into exit statuses.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train dit-web models, export their weights, generate images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train(Box<cli::train::Args>),
    Generate(cli::generate::Args),
    Export(cli::export::Args),
    LrFind(cli::lr_find::Args),
    Download(cli::download::Args),
    Classifier(cli::classifier::Args),
    Eval(cli::eval::Args),
    ImportTorch(cli::import_torch::Args),
    CheckStep(cli::check_step::Args),
    Bench(cli::bench::Args),
    Report(cli::report::Args),
    Shapes(cli::shapes::Args),
}

fn main() -> ExitCode {
    trainer::allocator::keep_freed_memory();
    let result = match Cli::parse().command {
        Command::Train(args) => cli::train::run(*args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Export(args) => cli::export::run(args),
        Command::LrFind(args) => cli::lr_find::run(args),
        Command::Download(args) => cli::download::run(args),
        Command::Classifier(args) => cli::classifier::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::ImportTorch(args) => cli::import_torch::run(args),
        Command::CheckStep(args) => cli::check_step::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Shapes(args) => cli::shapes::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A run stopped by Ctrl-C is not a failure of the trainer: its checkpoint is written.
        Err(e) if e.is::<cli::train::Stopped>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
