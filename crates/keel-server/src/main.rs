//! `keel-serve`: the V2 HTTP server over registered models, as its own executable that links
//! no training code (no LightGBM, no transform fitting, no keel-train). `keel serve` is the
//! same command inside the full `keel` CLI.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "keel-serve",
    version,
    about = "Serve registered keel models over the Open Inference Protocol (V2) on HTTP"
)]
struct Cli {
    #[command(flatten)]
    args: keel_server::ServeArgs,
}

fn main() -> anyhow::Result<()> {
    keel_server::run(Cli::parse().args)
}
