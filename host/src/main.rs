//! `mote`: train, quantize, export, import, run and benchmark models for microcontrollers.

mod cli;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mote_host::firmware::Board;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mote",
    version,
    about = "Neural networks for microcontrollers: train, quantize, run, fine-tune"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// The whole story: train the digits DS-CNN, quantize, export, run it on the emulated
    /// board, fine-tune it there on a new sensor, reboot, and show the learned weights survived.
    Demo {
        /// Where to write the checkpoint, plots and model.
        #[arg(long, default_value = "target/mote-demo")]
        out: PathBuf,
        /// Override the spec's number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Train a model definition (TOML) in f32 with progress bars; writes a checkpoint, the
    /// training curves and a confusion matrix (SVG).
    Train {
        /// The model definition, e.g. examples/digits_dscnn.toml.
        spec: PathBuf,
        /// `digits`, `motion`, a data file (CSV, ARFF, .npy, .npz, IDX) or a folder.
        #[arg(long, default_value = "digits")]
        data: String,
        /// A separate test file (otherwise a stratified, seeded share is held out).
        #[arg(long)]
        test: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "target/mote-train")]
        out: PathBuf,
        /// Override the spec's number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
        #[command(flatten)]
        reading: cli::train::DataArgs,
    },
    /// Quantize a checkpoint to int8 with a calibration subset and export the model directory
    /// (model.mote, generated model.rs, test and fine-tuning sets) the firmware builds from.
    Export {
        /// A checkpoint written by `mote train` (with its training.json beside it).
        checkpoint: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "target/mote-model")]
        out: PathBuf,
        /// Calibration samples from the training split.
        #[arg(long, default_value_t = 200)]
        calibration: usize,
        /// Activation ranges: `minmax` or a percentile such as `p99.99`.
        #[arg(long, default_value = "minmax")]
        range: String,
        /// Also write a fine-tuning set seen through a new sensor `x' = gain * x + offset`
        /// (offset as a fraction of the data's range), e.g. `0.4,0.5`.
        #[arg(long, value_parser = parse_shift, conflicts_with = "finetune_data")]
        finetune_shift: Option<(f32, f32)>,
        /// Also write a fine-tuning set from a labelled recording of the new sensor (raw
        /// readings in any data format `--data` takes, read as the training data was): 80% to
        /// fine-tune on, 20% to score.
        #[arg(long)]
        finetune_data: Option<PathBuf>,
        /// Training data instead of the recorded one (calibration; its split if no test file).
        #[arg(long)]
        data: Option<String>,
        /// A test file instead of the recorded test split.
        #[arg(long)]
        test: Option<PathBuf>,
    },
    /// Accuracy and confusion matrix of a checkpoint (f32) or an exported model (int8).
    Eval {
        /// A `.ckpt` checkpoint, or a model directory / `model.mote`.
        model: PathBuf,
        /// The data to score: every sample of a file, or the test split of a bundled set or
        /// folder (default: the test split the model was trained and exported with).
        #[arg(long)]
        data: Option<String>,
    },
    /// Run a firmware ELF on a board (QEMU's emulated Cortex-M4 by default) and show its log.
    ///
    /// Also works as cargo's runner: `cargo run -p mote-firmware --target thumbv7em-none-eabihf`
    /// (`cargo qemu-m3`, `cargo qemu-m55`, ... for the other cores: .cargo/config.toml).
    Run {
        /// The firmware ELF to run.
        elf: PathBuf,
        /// Where to run it.
        #[arg(long, value_enum, default_value_t = Board::Qemu)]
        board: Board,
        /// Shorthand for `--board qemu`.
        #[arg(long, conflicts_with = "board")]
        qemu: bool,
        /// Give up on a QEMU run after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Build the firmware around each model, run it in QEMU, and print what it costs.
    Bench {
        /// The QEMU boards to run on, comma-separated (`--board qemu,qemu-m3,qemu-m55`); with
        /// several, a last table compares instructions per inference across their cores. The
        /// micro:bit's default suite is the demo model alone (16 KiB of RAM).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "qemu")]
        board: Vec<Board>,
        /// `.mote` models (default: the firmware's demo model).
        models: Vec<PathBuf>,
        /// Raw input vectors for the models, laid out as `mote infer` reads them (default: `x[i] = (i*7 % 256) - 128`).
        #[arg(long)]
        input: Option<PathBuf>,
        /// The outputs the input vectors must give (e.g. TFLite-Micro's), laid out as `mote
        /// infer` writes them; the table's `bit-exact` column says whether the device gave them.
        #[arg(long, requires = "input")]
        expected: Option<PathBuf>,
        /// Also print each model's per-layer profile.
        #[arg(long)]
        layers: bool,
        /// Instead: measure host training throughput of this model definition (median over
        /// 3 runs of 3 epochs of total samples over total training time).
        #[arg(long)]
        train: Option<PathBuf>,
        /// The data `--train` trains on.
        #[arg(long, default_value = "digits", requires = "train")]
        data: String,
        /// Also write a per-layer chart (instructions and MACs per operator) for each model
        /// to `DIR/<model name>-layers.svg`.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// The core clock the estimated Cortex-M4 cycles are turned into milliseconds at.
        /// The cycle estimate (on the qemu board only) reruns each model with QEMU logging
        /// every executed instruction block, and prices each instruction with the Cortex-M4
        /// TRM's timings (zero-wait-state memory, taken branches 1 + 2 cycles).
        #[arg(long, default_value_t = mote_host::bench::DEFAULT_CLOCK_MHZ)]
        clock_mhz: f64,
        /// Skip the cycle estimate and its traced run.
        #[arg(long)]
        no_cycles: bool,
    },
    /// Estimate the Cortex-M4 cycles of one call of a function in any firmware ELF that
    /// runs on QEMU's mps2-an386 with semihosting (e.g. a TFLite-Micro build), from a trace
    /// of its execution priced with the Cortex-M4 TRM's timings.
    Cycles {
        /// The firmware ELF.
        elf: PathBuf,
        /// The function whose first call is timed: its symbol, or a C++ name without
        /// parameters (`tflite::MicroInterpreter::Invoke`); the default is mote's timed invoke.
        #[arg(long, default_value = mote_host::cycles::MOTE_TIMED_SYMBOL)]
        symbol: String,
        /// The core clock for milliseconds.
        #[arg(long, default_value_t = mote_host::bench::DEFAULT_CLOCK_MHZ)]
        clock_mhz: f64,
        /// Multiply-accumulates per call, for cycles per MAC.
        #[arg(long)]
        macs: Option<u64>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Convert an int8 `.tflite` model into a `.mote` model.
    #[command(after_help = import_help())]
    Import {
        /// The `.tflite` file.
        model: PathBuf,
        /// Where to write the `.mote` model.
        #[arg(short, long, required_unless_present = "dir")]
        output: Option<PathBuf>,
        /// Or a model directory: model.mote, and model.rs with the mote-core features it needs.
        #[arg(long, conflicts_with = "output")]
        dir: Option<PathBuf>,
    },
    /// Run raw input vectors (back to back) through a `.mote` or `.tflite` model on the host
    /// and write the raw outputs (back to back).
    Infer {
        /// The model.
        model: PathBuf,
        /// Input vectors: each is the model's inputs in order, each raw in its own type
        /// (int8, uint8, int16, int32 or float32, little-endian), back to back.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the outputs, laid out like the inputs.
        #[arg(long)]
        output: PathBuf,
    },
    /// Build the firmware around a model and run it: on QEMU's emulated Cortex-M4 by default
    /// (or another emulated core), or flashed to a board through probe-rs. With
    /// `--model-only`, write a new model into the model slots of a firmware already built
    /// with them, without rebuilding or reflashing its code.
    Deploy {
        /// A model directory written by `mote export` (model.mote, test and fine-tuning sets),
        /// or a single `.mote` or `.tflite` file (run on one reference input).
        model: PathBuf,
        /// Where to run it.
        #[arg(long, value_enum, default_value_t = Board::Qemu)]
        board: Board,
        /// Give up on a QEMU run after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Build the firmware with two model slots of this many bytes each (a multiple of
        /// 4096), so later models can be written with `--model-only`.
        #[arg(long, value_name = "BYTES")]
        model_slot_bytes: Option<u64>,
        /// Give the firmware at least this much arena, for larger models written later.
        #[arg(long, value_name = "BYTES")]
        arena_bytes: Option<u64>,
        /// Let the firmware decode at least this many operators, for models written later.
        #[arg(long, value_name = "COUNT")]
        max_operators: Option<u64>,
        /// Only write the model into the slots of the firmware `--elf` (the QEMU image, which is
        /// then run; or, on a board, its flash through probe-rs, which is then reset). The
        /// device checks the model and runs the previous one if it cannot run it.
        #[arg(long, requires = "elf")]
        model_only: bool,
        /// The firmware ELF the device runs, built with model slots (`--model-only`).
        #[arg(long)]
        elf: Option<PathBuf>,
    },
    /// Show a model's layers: operator, output shape, MACs, weights and arena placement
    /// (`.mote`), or layers, shapes and parameters (a `.ckpt` checkpoint).
    Inspect {
        /// A `.mote` or `.tflite` file, or a `.ckpt` checkpoint.
        model: PathBuf,
        /// Also write `DIR/<stem>-layers.svg` (MACs and weight bytes per operator) and
        /// `DIR/<stem>-memory.svg` (the arena plan over time) for a `.mote` or `.tflite` model.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Commands::Demo { out, epochs } => {
            cli::demo::run(&out, epochs)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Train {
            spec,
            data,
            test,
            out,
            epochs,
            reading,
        } => {
            cli::train::train(&spec, &data, test.as_deref(), &out, epochs, &reading)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Export {
            checkpoint,
            out,
            calibration,
            range,
            finetune_shift,
            finetune_data,
            data,
            test,
        } => {
            let method = cli::train::range_method(&range)?;
            let finetune = match (finetune_shift, finetune_data) {
                (Some((gain, offset)), _) => Some(cli::train::FinetuneSource::Shift(gain, offset)),
                (None, Some(path)) => Some(cli::train::FinetuneSource::Recording(path)),
                (None, None) => None,
            };
            let sources = cli::train::SourceOverride { data, test };
            cli::train::export(&checkpoint, &out, calibration, method, finetune, &sources)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Eval { model, data } => {
            cli::train::eval(&model, data.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Import { model, output, dir } => {
            let bytes = read(&model)?;
            let built = mote_host::tflite::import_tflite(&bytes)
                .with_context(|| format!("importing {}", model.display()))?;
            let aligned = mote_host::AlignedBytes::new(&built.bytes);
            let parsed = mote_core::Model::parse(aligned.as_slice()).map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                mote_host::inspect::table(&parsed).map_err(anyhow::Error::msg)?
            );
            let written = match (output, dir) {
                (_, Some(dir)) => {
                    let name = model.file_stem().unwrap_or_default().to_string_lossy();
                    let info = mote_host::export::ExportInfo {
                        name: &name,
                        class_names: &[],
                        normalization: None,
                    };
                    mote_host::export::write_model_files(&dir, &built.bytes, &info)?;
                    dir
                }
                (Some(output), None) => {
                    std::fs::write(&output, &built.bytes)
                        .with_context(|| format!("writing {}", output.display()))?;
                    output
                }
                (None, None) => anyhow::bail!("give -o FILE or --dir DIR"),
            };
            println!("wrote {}", written.display());
            Ok(ExitCode::SUCCESS)
        }
        Commands::Infer {
            model,
            input,
            output,
        } => {
            let outputs = mote_host::tflite::infer(&read(&model)?, &read(&input)?)?;
            std::fs::write(&output, &outputs)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!(
                "wrote {} output bytes to {}",
                outputs.len(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Commands::Bench {
            board: boards,
            models,
            input,
            expected,
            layers,
            train,
            data,
            plot,
            clock_mhz,
            no_cycles,
        } => {
            if !(clock_mhz > 0.0 && clock_mhz.is_finite()) {
                bail!("--clock-mhz must be a positive number of MHz, not {clock_mhz}");
            }
            if let Some(spec) = train {
                let median = cli::train::throughput(&spec, &data, 3, 3)?;
                println!(
                    "{}: median {median:.0} samples/s (3 runs x 3 epochs, all cores)",
                    spec.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(b) = boards.iter().find(|b| b.qemu_machine().is_none()) {
                bail!("mote bench runs in QEMU: {b:?} is a real board (`mote deploy --board` runs it there)");
            }
            let root = mote_host::firmware::workspace_root();
            let mut suite = Vec::new();
            if models.is_empty() {
                // The demo model and the MLPerf Tiny models with all their golden vectors.
                let demo = root.join("firmware/models/demo/model.mote");
                suite.push((bench_case(&demo, input.as_deref(), None)?, None));
                suite.extend(mote_host::bench::mlperf_suite(
                    &root.join("tests/mlperf"),
                    usize::MAX,
                )?);
            } else {
                for path in &models {
                    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                    let reference = stem.as_deref().and_then(mote_host::bench::tflm_reference);
                    let case = bench_case(path, input.as_deref(), expected.as_deref())?;
                    suite.push((case, reference));
                }
            }
            let mut per_board = Vec::new();
            let mut failed = 0;
            for &board in &boards {
                let mut results = Vec::new();
                for (index, (case, reference)) in suite.iter().enumerate() {
                    // The MLPerf models need 2.6 KiB to 100 KiB of arena, more RAM than
                    // the micro:bit's 16 KiB has for some and its flash for others.
                    if board == Board::Microbit && models.is_empty() && index > 0 {
                        continue;
                    }
                    eprintln!(
                        "bench: {}: building the firmware for {board:?} ({}) and running it in QEMU...",
                        case.name,
                        board.core()
                    );
                    let extras = mote_host::bench::Extras {
                        cycles: board == Board::Qemu && !no_cycles,
                        all_paths_flash: true,
                    };
                    let result = mote_host::bench::run_measuring(board, case, extras)?;
                    if let Some(dir) = &plot {
                        let aligned = mote_host::AlignedBytes::new(&case.model);
                        let parsed = mote_core::Model::parse(aligned.as_slice())
                            .map_err(anyhow::Error::msg)?;
                        cli::plots::bench(dir, &parsed, &result)?;
                    }
                    if layers {
                        for (i, l) in result.report.layers.iter().enumerate() {
                            let stack = l
                                .stack
                                .map(|s| format!(", stack {s:>5} B"))
                                .unwrap_or_default();
                            let cycles = result
                                .layer_cycles
                                .get(i)
                                .map(|c| format!(", {:>12} est. M4 cycles", c.cycles))
                                .unwrap_or_default();
                            println!(
                                "{}: layer {i:>2} {:<18} {:>12} instructions{cycles}{stack}",
                                result.name, l.op, l.cost
                            );
                        }
                    }
                    results.push((result, *reference));
                }
                if boards.len() > 1 {
                    println!("\n{board:?} ({}):", board.core());
                }
                // The TFLite-Micro reference figures were measured on the Cortex-M4F.
                if board != Board::Qemu {
                    results.iter_mut().for_each(|(_, r)| *r = None);
                }
                print!("{}", mote_host::bench::table_at(&results, clock_mhz));
                failed += results
                    .iter()
                    .filter(|(r, _)| r.bit_exact == Some(false))
                    .count();
                per_board.push((board, results.into_iter().map(|(r, _)| r).collect()));
            }
            if boards.len() > 1 {
                println!("\ninstructions per inference, by core:");
                print!("{}", mote_host::bench::cores_table(&per_board));
            }
            if failed > 0 {
                bail!("{failed} run(s) did not reproduce their golden outputs");
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Cycles {
            elf,
            symbol,
            clock_mhz,
            macs,
            timeout,
        } => {
            if !(clock_mhz > 0.0 && clock_mhz.is_finite()) {
                bail!("--clock-mhz must be a positive number of MHz, not {clock_mhz}");
            }
            let e = mote_host::cycles::estimate_elf(&elf, &symbol, Duration::from_secs(timeout))?;
            println!("| ELF | instructions | est. M4 cycles | CPI | cycles/MAC | ms @ {clock_mhz} MHz | taken branches | loads/stores (pipelined) |");
            println!("|---|---|---|---|---|---|---|---|");
            let per_mac = macs.map_or("-".into(), |m| {
                format!("{:.2}", e.cycles as f64 / m.max(1) as f64)
            });
            println!(
                "| {} | {} | {} | {:.2} | {per_mac} | {:.2} | {} | {} ({}) |",
                elf.display(),
                e.instructions,
                e.cycles,
                e.cpi(),
                e.millis(clock_mhz),
                e.taken_branches,
                e.single_transfers,
                e.pipelined
            );
            Ok(ExitCode::SUCCESS)
        }
        Commands::Inspect { model, plot } => {
            if model.extension().is_some_and(|e| e == "ckpt") {
                if plot.is_some() {
                    bail!("--plot needs a `.mote` or `.tflite` model (a checkpoint has no arena plan); `mote export` writes one");
                }
                let net = mote_host::train::Network::load(&model)
                    .with_context(|| format!("reading {}", model.display()))?;
                println!(
                    "{:<8} {:<18} {:<16} {:<16} {:>10}",
                    "layer", "type", "input", "output", "params"
                );
                for l in net.layers() {
                    let path = l
                        .path
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(".");
                    println!(
                        "{path:<8} {:<18} {:<16} {:<16} {:>10}",
                        l.layer_type,
                        format!("{:?}", l.input),
                        format!("{:?}", l.output),
                        l.parameters
                    );
                }
                println!(
                    "total: {} parameters (f32: {} bytes); `mote export` writes the int8 model",
                    net.parameter_count(),
                    4 * net.parameter_count()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let bytes = model_bytes(&model)?;
            let aligned = mote_host::AlignedBytes::new(&bytes);
            let parsed = mote_core::Model::parse(aligned.as_slice())
                .map_err(|e| anyhow::anyhow!("{} is not a valid model: {e}", model.display()))?;
            print!(
                "{}",
                mote_host::inspect::table(&parsed).map_err(anyhow::Error::msg)?
            );
            if let Some(dir) = &plot {
                cli::plots::inspect(dir, &model_name(&model), &parsed)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Run {
            elf,
            board,
            qemu,
            timeout,
        } => {
            let board = if qemu { Board::Qemu } else { board };
            run_on_board(&elf, board, timeout)
        }
        Commands::Deploy {
            model,
            board,
            timeout,
            model_slot_bytes,
            arena_bytes,
            max_operators,
            model_only,
            elf,
        } => {
            if model_only {
                let elf = elf.context("--model-only needs --elf, the firmware the device runs")?;
                return deploy_model_only(&model, &elf, board, timeout);
            }
            // Held to the end of the run: dropping it removes the model's temporary directory.
            let (dir, _staging) = model_dir(&model)?;
            eprintln!(
                "deploy: building the firmware for {board:?} around {}...",
                dir.display()
            );
            let mut envs = vec![(
                "MOTE_MODEL_DIR",
                dir.to_str()
                    .context("model directory path is not UTF-8")?
                    .to_string(),
            )];
            for (name, value) in [
                ("MOTE_MODEL_SLOT_BYTES", model_slot_bytes),
                ("MOTE_ARENA_BYTES", arena_bytes),
                ("MOTE_MAX_OPERATORS", max_operators),
            ] {
                envs.extend(value.map(|v| (name, v.to_string())));
            }
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let elf = mote_host::firmware::build(board, &envs)?;
            eprintln!("deploy: firmware {}", elf.display());
            run_on_board(&elf, board, timeout)
        }
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A `.mote` file's bytes, or a `.tflite` file imported into them.
fn model_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = read(path)?;
    if !mote_host::tflite::is_tflite(&bytes) {
        return Ok(bytes);
    }
    Ok(mote_host::tflite::import_tflite(&bytes)
        .with_context(|| format!("importing {}", path.display()))?
        .bytes)
}

/// A model's name: its file stem, or its directory's for `dir/model.mote`.
fn model_name(path: &std::path::Path) -> String {
    let named = if path.file_stem().is_some_and(|s| s == "model") {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    named
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned())
}

/// A bench case for a `.mote` or `.tflite` file, timed on `input` or the reference input.
fn bench_case(
    path: &std::path::Path,
    input: Option<&std::path::Path>,
    expected: Option<&std::path::Path>,
) -> Result<mote_host::bench::BenchCase> {
    let model = model_bytes(path)?;
    let aligned = mote_host::AlignedBytes::new(&model);
    let parsed = mote_core::Model::parse(aligned.as_slice())
        .map_err(|e| anyhow::anyhow!("{} is not a valid model: {e}", path.display()))?;
    let inputs = match input {
        Some(p) => read(p)?,
        None => mote_host::bench::reference_vector(&parsed)?,
    };
    Ok(mote_host::bench::BenchCase {
        name: model_name(path),
        model,
        inputs,
        expected: expected.map(read).transpose()?,
    })
}

/// Runs a firmware ELF on `board`, streaming its log; the exit code is the firmware's.
fn run_on_board(elf: &std::path::Path, board: Board, timeout: u64) -> Result<ExitCode> {
    if let Some(chip) = board.probe_chip() {
        let status = std::process::Command::new("probe-rs")
            .args(["run", "--chip", chip])
            .arg(elf)
            .status();
        return match status {
            Ok(s) if s.success() => Ok(ExitCode::SUCCESS),
            Ok(_) => Ok(ExitCode::from(1)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "probe-rs not found: install it with `cargo install probe-rs-tools --locked` \
                 (needs libudev-dev and pkg-config)"
            ),
            Err(e) => bail!("starting probe-rs: {e}"),
        };
    }
    let run = mote_host::qemu::run_elf_on(board, elf, Duration::from_secs(timeout), |line| {
        // A closed pipe (`mote run ... | head`) is no reason to panic.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    })?;
    if run.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("firmware exited with status {}", run.exit_code);
        Ok(ExitCode::from(1))
    }
}

/// `mote deploy --model-only`: `model` (a file, or a directory's model.mote) into the slots of
/// the firmware `elf`, then run or reset.
fn deploy_model_only(
    model: &std::path::Path,
    elf: &std::path::Path,
    board: Board,
    timeout: u64,
) -> Result<ExitCode> {
    let file = if model.is_dir() {
        model.join("model.mote")
    } else {
        model.to_path_buf()
    };
    let blob = model_bytes(&file)?;
    let slot_name = |slot: usize| if slot == 0 { "A" } else { "B" };
    if let Some(chip) = board.probe_chip() {
        let stored = mote_host::model_slots::write_model_to_board(elf, chip, &blob)?;
        eprintln!(
            "deploy: {} written to model slot {} (sequence {}) of the {board:?}, which was reset; \
             `probe-rs attach --chip {chip} {}` shows its log",
            file.display(),
            slot_name(stored.stored.slot),
            stored.stored.sequence,
            elf.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut image = mote_host::model_slots::FirmwareImage::read(elf)?;
    let stored = image.write_model(&blob)?;
    image.save(elf)?;
    eprintln!(
        "deploy: {} written to model slot {} (sequence {}) of {}",
        file.display(),
        slot_name(stored.stored.slot),
        stored.stored.sequence,
        elf.display()
    );
    run_on_board(elf, board, timeout)
}

/// A model directory for the firmware: `path` itself if it is one, else a temporary directory
/// holding the `.mote` (or imported `.tflite`) model and one reference input vector, with the
/// guard that removes it.
fn model_dir(path: &std::path::Path) -> Result<(PathBuf, Option<mote_host::TempDir>)> {
    if path.is_dir() {
        if !path.join("model.mote").exists() {
            bail!(
                "{} has no model.mote: is it a directory written by `mote export`?",
                path.display()
            );
        }
        return Ok((path.to_path_buf(), None));
    }
    let case = bench_case(path, None, None)?;
    let staging =
        mote_host::TempDir::new("mote-deploy").context("creating a temporary directory")?;
    let dir = staging.path().to_path_buf();
    std::fs::write(dir.join("model.mote"), &case.model)?;
    std::fs::write(dir.join("test_inputs.i8"), &case.inputs)?;
    Ok((dir, Some(staging)))
}

/// `gain,offset`.
fn parse_shift(s: &str) -> Result<(f32, f32), String> {
    let (g, o) = s
        .split_once(',')
        .ok_or("expected `gain,offset`, e.g. `0.4,0.5`")?;
    let number = |v: &str| -> Result<f32, String> {
        match v.trim().parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(x),
            Ok(x) => Err(format!("{x} is not a finite number")),
            Err(e) => Err(format!("{e}")),
        }
    };
    Ok((number(g)?, number(o)?))
}

/// A closed standard output (`mote eval ... | head`) ends the program quietly, as Unix tools
/// do, instead of a panic in the next print: SIGPIPE gets its default action back (Rust's
/// runtime ignores it).
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called first in `main`, before any thread exists; it installs no handler, only
    // restores the default action, which takes no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The operators `mote import` takes, for its help.
fn import_help() -> String {
    let names = mote_host::tflite::supported_operators();
    format!("Operators ({}): {}", names.len(), names.join(", "))
}
