//! `keel`: the command-line face of keel.
//!
//! ```text
//! keel gbdt predict --model PATH --input CSV --output CSV [--raw] [--contrib] [--leaf]
//!                   [--by-position] [--na-values n/a,NULL]
//!                   [--start-iteration N] [--num-iteration N] [--threads N]
//! keel gbdt inspect PATH
//! keel store apply|ingest|get|historical|checkpoint ...
//! keel runs list|show|compare ...          [--registry DIR]
//! keel models list|show|alias set|alias rollback|alias history ...
//! keel train --config JOB.toml --data CSV
//! keel drift --reference CSV --current CSV [--json OUT] [--html OUT]
//! keel serve --registry DIR --model NAME[:SERVICE] [--store DIR] [--addr 127.0.0.1:8000]
//! ```

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use keel::core::{CsvOptions, Frame};
use keel::gbdt::{GbdtModel, Output, PredictOptions};
use std::io::Write;
use std::path::PathBuf;

mod drift_cmd;
mod ml_cmd;
mod output;
mod progress;
mod store_cmd;

#[derive(Parser)]
#[command(
    name = "keel",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KEEL_GIT_COMMIT"), ")"),
    about = "keel: production ML in Rust",
    after_help = "Commands that print data take --format table|json|csv (docs/cli.md names the fields).\n\nExit codes: 0 ok; 1 error (bad input, unreachable store or registry, damaged registry \n\
                  found by `models verify`); 2 usage (unknown flag, missing argument); 3 drift found \n\
                  (`keel drift`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Gradient-boosted trees: score and inspect LightGBM / XGBoost / keel models.
    #[command(subcommand)]
    Gbdt(Gbdt),
    /// Feature store: apply definitions, ingest, read online, build training sets, checkpoint.
    #[command(subcommand)]
    Store(store_cmd::StoreCmd),
    /// Tracked training runs: list (with a query), show, compare.
    Runs {
        #[command(flatten)]
        registry: ml_cmd::RegistryArg,
        #[command(subcommand)]
        cmd: ml_cmd::RunsCmd,
    },
    /// Registered models: list, show, move aliases, roll back.
    Models {
        #[command(flatten)]
        registry: ml_cmd::RegistryArg,
        #[command(subcommand)]
        cmd: ml_cmd::ModelsCmd,
    },
    /// Data drift of a current CSV against a reference CSV (Evidently's preset), as a table,
    /// JSON and an offline HTML page.
    #[command(
        after_help = "Example:\n  keel drift --reference train.csv --current today.csv --json drift.json --html drift.html"
    )]
    Drift(drift_cmd::DriftArgs),
    /// Serve registered models over the Open Inference Protocol (V2) on HTTP, with Prometheus
    /// metrics and admin calls (shadow, promote, rollback) protected by a token.
    #[command(
        after_help = "Example:\n  keel serve --registry keel-data/registry --model fraud:fraud_v1 --store keel-data/store --grpc-addr 127.0.0.1:8001 --log-format json"
    )]
    Serve(keel_server::ServeArgs),
    /// Print a shell completion script: `keel completions bash > /etc/bash_completion.d/keel`.
    #[command(after_help = "Example:\n  keel completions bash > /etc/bash_completion.d/keel")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run a training job described in a TOML file; tracks and registers it.
    #[command(
        after_help = "Example:\n  keel train --registry keel-data/registry --config job.toml --data train.csv"
    )]
    Train {
        #[command(flatten)]
        registry: ml_cmd::RegistryArg,
        #[command(flatten)]
        args: ml_cmd::TrainArgs,
    },
}

#[derive(Subcommand)]
enum Gbdt {
    /// Score a CSV with a model (format detected from the file).
    #[command(
        after_help = "Example:\n  keel gbdt predict --model model.txt --input rows.csv --output scores.csv"
    )]
    Predict(PredictArgs),
    /// Print a model's objective, classes, trees, leaves, depth and features.
    #[command(after_help = "Example:\n  keel gbdt inspect model.json")]
    Inspect {
        /// Model file (LightGBM text, XGBoost JSON/UBJSON, or keel binary).
        path: PathBuf,
    },
}

#[derive(Args)]
struct PredictArgs {
    /// Model file (LightGBM text, XGBoost JSON/UBJSON, or keel binary).
    #[arg(long)]
    model: PathBuf,
    /// Input CSV with a header. Columns are matched to the model's features by name; other
    /// columns (ids, labels) are ignored. An empty field or `NaN` is missing; any other text
    /// that is not a number is an error naming its row and column.
    #[arg(long)]
    input: PathBuf,
    /// The input has no header row: its columns are the model's features, in order.
    #[arg(long)]
    by_position: bool,
    /// More field texts that mean "missing", comma-separated (e.g. `n/a,NULL,-`).
    #[arg(long, value_delimiter = ',')]
    na_values: Vec<String>,
    /// Output CSV (header + one row per input row).
    #[arg(long)]
    output: PathBuf,
    /// Raw margins instead of transformed predictions.
    #[arg(long, conflicts_with_all = ["contrib", "leaf"])]
    raw: bool,
    /// TreeSHAP contributions (per class: one column per feature, then the bias).
    #[arg(long, conflicts_with = "leaf")]
    contrib: bool,
    /// Leaf index reached in each tree.
    #[arg(long)]
    leaf: bool,
    /// First iteration to use.
    #[arg(long, default_value_t = 0)]
    start_iteration: usize,
    /// Number of iterations to use (default: all).
    #[arg(long)]
    num_iteration: Option<usize>,
    /// Worker threads for the batch.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gbdt(Gbdt::Inspect { path }) => inspect(&path),
        Command::Gbdt(Gbdt::Predict(args)) => predict(&args),
        Command::Store(cmd) => store_cmd::run(cmd),
        Command::Runs { registry, cmd } => ml_cmd::runs(&registry, cmd),
        Command::Models { registry, cmd } => ml_cmd::models(&registry, cmd),
        Command::Train { registry, args } => ml_cmd::train(&registry, args),
        Command::Drift(args) => drift_cmd::run(args),
        Command::Serve(args) => keel_server::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn inspect(path: &PathBuf) -> Result<()> {
    let model =
        GbdtModel::from_path(path).with_context(|| format!("loading {}", path.display()))?;
    let i = model.info();
    println!("source:       {:?}", i.source);
    println!("objective:    {} ({:?})", i.objective, i.transform);
    println!("outputs:      {}", i.num_outputs);
    println!("iterations:   {}", i.num_iterations);
    println!("trees:        {}", i.num_trees);
    println!("leaves:       {}", i.num_leaves);
    println!("max depth:    {}", i.max_depth);
    println!("features:     {}", i.num_features);
    println!("names:        {}", i.feature_names.join(" "));
    if !i.categorical_features.is_empty() {
        let names: Vec<&str> = i
            .categorical_features
            .iter()
            .map(|&f| i.feature_names[f].as_str())
            .collect();
        println!("categorical:  {}", names.join(" "));
    }
    if i.linear_leaves {
        println!("linear leaves: yes");
    }
    Ok(())
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        x.to_string()
    }
}

fn predict(a: &PredictArgs) -> Result<()> {
    let model =
        GbdtModel::from_path(&a.model).with_context(|| format!("loading {}", a.model.display()))?;
    if !a.by_position {
        let mut reader = csv::Reader::from_path(&a.input)
            .with_context(|| format!("reading {}", a.input.display()))?;
        let header = reader.headers()?;
        model.require_columns(header.iter()).with_context(|| {
            format!(
                "{}: for a file without a header whose columns are the features in order, pass \
                 --by-position",
                a.input.display()
            )
        })?;
    }
    let options = CsvOptions {
        no_header: a.by_position,
        na_values: a.na_values.clone(),
    };
    let frame = Frame::from_csv_path_with(&a.input, Some(&model.input_schema()?), &options)
        .with_context(|| format!("reading {}", a.input.display()))?;
    let x = model.frame_matrix(&frame)?;
    let opts = PredictOptions {
        output: if a.raw {
            Output::Raw
        } else {
            Output::Transformed
        },
        start_iteration: a.start_iteration,
        num_iteration: a.num_iteration,
        threads: a.threads.max(1),
    };
    let file = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let k = model.num_outputs();
    let class = |c: usize| {
        if k == 1 {
            String::new()
        } else {
            format!("class_{c}_")
        }
    };
    if a.leaf {
        let leaves = model.predict_leaf(&x, &opts)?;
        let n = frame.nrows();
        let trees = leaves.len().checked_div(n).unwrap_or(0);
        let header: Vec<String> = (0..trees).map(|t| format!("tree_{t}")).collect();
        writeln!(w, "{}", header.join(","))?;
        for row in leaves.chunks(trees.max(1)).take(n) {
            let cells: Vec<String> = row.iter().map(u32::to_string).collect();
            writeln!(w, "{}", cells.join(","))?;
        }
    } else if a.contrib {
        let c = model.predict_contrib(&x, &opts)?;
        let mut header = Vec::new();
        for cl in 0..k {
            for name in model.feature_names() {
                header.push(format!("{}{name}", class(cl)));
            }
            header.push(format!("{}bias", class(cl)));
        }
        writeln!(w, "{}", header.join(","))?;
        for row in c.chunks(header.len()) {
            writeln!(
                w,
                "{}",
                row.iter().map(|&v| fmt(v)).collect::<Vec<_>>().join(",")
            )?;
        }
    } else {
        let p = model.predict(&x, &opts)?;
        let width = model.output_width(opts.output);
        let header: Vec<String> = if width == 1 {
            vec![if k > 1 {
                "class".into()
            } else {
                "prediction".into()
            }]
        } else {
            (0..width).map(|c| format!("class_{c}")).collect()
        };
        writeln!(w, "{}", header.join(","))?;
        for row in p.chunks(width) {
            writeln!(
                w,
                "{}",
                row.iter().map(|&v| fmt(v)).collect::<Vec<_>>().join(",")
            )?;
        }
    }
    w.flush()?;
    if frame.nrows() > 0 && x.is_empty() {
        bail!("no input rows");
    }
    eprintln!(
        "scored {} rows with {} -> {}",
        frame.nrows(),
        a.model.display(),
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Issue 24: every flag says what it does, and every command shows an example.
    #[test]
    fn every_flag_has_help_and_every_command_an_example() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", c.get_name());
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path}: argument `{id}` has no help"));
                }
            }
            let subs: Vec<&clap::Command> = c
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let example = c
                    .get_after_help()
                    .is_some_and(|h| h.to_string().contains("Example:"));
                if !example {
                    missing.push(format!("{path}: no example in --help"));
                }
            }
            for s in subs {
                walk(s, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
