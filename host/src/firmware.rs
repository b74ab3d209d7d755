//! Building the firmware for a board from the host, with cargo.

use crate::AlignedBytes;
use anyhow::{bail, Context, Result};
use mote_core::Model;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The thumb target of the default board, QEMU's Cortex-M4F (and the nRF52840's).
pub const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

/// A board the firmware can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Board {
    /// QEMU `mps2-an386` (Cortex-M4F, semihosting): no hardware needed.
    Qemu,
    /// QEMU `mps2-an385` (Cortex-M3: no DSP extension, so mote-core's portable kernels).
    QemuM3,
    /// QEMU `mps2-an500` (Cortex-M7).
    QemuM7,
    /// QEMU `mps2-an505` (Cortex-M33, with the DSP extension).
    QemuM33,
    /// QEMU `mps3-an547` (Cortex-M55, with the DSP and MVE extensions).
    QemuM55,
    /// QEMU `microbit` (BBC micro:bit, Cortex-M0, 16 KiB of RAM): small models only.
    Microbit,
    /// Nordic nRF52840-DK, flashed through probe-rs.
    Nrf52840,
    /// ST NUCLEO-F411RE (STM32F411, Cortex-M4F), flashed through probe-rs.
    Stm32f4,
    /// Raspberry Pi Pico (RP2040, Cortex-M0+), flashed through probe-rs.
    Rp2040,
}

impl Board {
    /// Every QEMU board, the default (Cortex-M4F) first.
    pub const QEMU: [Board; 6] = [
        Board::Qemu,
        Board::QemuM3,
        Board::QemuM7,
        Board::QemuM33,
        Board::QemuM55,
        Board::Microbit,
    ];

    /// The firmware's cargo feature for this board.
    pub fn feature(self) -> &'static str {
        match self {
            Board::Qemu => "qemu",
            Board::QemuM3 => "qemu-m3",
            Board::QemuM7 => "qemu-m7",
            Board::QemuM33 => "qemu-m33",
            Board::QemuM55 => "qemu-m55",
            Board::Microbit => "microbit",
            Board::Nrf52840 => "nrf52840",
            Board::Stm32f4 => "stm32f4",
            Board::Rp2040 => "rp2040",
        }
    }

    /// The board's core, for tables.
    pub fn core(self) -> &'static str {
        match self {
            Board::Qemu | Board::Nrf52840 | Board::Stm32f4 => "Cortex-M4F",
            Board::QemuM3 => "Cortex-M3",
            Board::QemuM7 => "Cortex-M7",
            Board::QemuM33 => "Cortex-M33",
            Board::QemuM55 => "Cortex-M55",
            Board::Microbit => "Cortex-M0",
            Board::Rp2040 => "Cortex-M0+",
        }
    }

    /// The thumb target the firmware is built for.
    pub fn target(self) -> &'static str {
        match self {
            Board::Qemu | Board::QemuM7 | Board::Nrf52840 | Board::Stm32f4 => FIRMWARE_TARGET,
            Board::QemuM3 => "thumbv7m-none-eabi",
            Board::QemuM33 | Board::QemuM55 => "thumbv8m.main-none-eabihf",
            Board::Microbit | Board::Rp2040 => "thumbv6m-none-eabi",
        }
    }

    /// Extra rustc flags for the core. ARMv8-M Mainline's DSP extension is optional, so the
    /// target alone has none: naming the core turns it on (and mote-core's DSP kernels with
    /// it, see core/build.rs), and on the M55 Armv8.1-M's loop and select instructions. The M7 takes the
    /// M4's code: QEMU counts instructions, which the M7's scheduling would barely change.
    pub fn rustflags(self) -> &'static [&'static str] {
        match self {
            Board::QemuM33 => &["-C", "target-cpu=cortex-m33"],
            Board::QemuM55 => &["-C", "target-cpu=cortex-m55"],
            _ => &[],
        }
    }

    /// QEMU's machine and CPU for a QEMU board.
    pub fn qemu_machine(self) -> Option<(&'static str, &'static str)> {
        match self {
            Board::Qemu => Some(("mps2-an386", "cortex-m4")),
            Board::QemuM3 => Some(("mps2-an385", "cortex-m3")),
            Board::QemuM7 => Some(("mps2-an500", "cortex-m7")),
            Board::QemuM33 => Some(("mps2-an505", "cortex-m33")),
            Board::QemuM55 => Some(("mps3-an547", "cortex-m55")),
            Board::Microbit => Some(("microbit", "cortex-m0")),
            Board::Nrf52840 | Board::Stm32f4 | Board::Rp2040 => None,
        }
    }

    /// probe-rs's name for a real board's chip.
    pub fn probe_chip(self) -> Option<&'static str> {
        match self {
            Board::Nrf52840 => Some("nRF52840_xxAA"),
            Board::Stm32f4 => Some("STM32F411RETx"),
            Board::Rp2040 => Some("RP2040"),
            _ => None,
        }
    }
}

/// The operator features `model` needs, sorted and without repeats, plus
/// `reference-kernels` if some layer would run a reference kernel and the `kernel-*` paths its
/// layers take.
pub fn model_op_features(model: &Model<'_>) -> Result<Vec<&'static str>> {
    let mut features = Vec::new();
    for index in 0..model.op_count() {
        let op = model
            .op(index)
            .map_err(|e| anyhow::anyhow!("operator {index}: {e}"))?;
        features.extend(op.opcode.feature());
    }
    if model
        .needs_reference_kernels()
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        features.push("reference-kernels");
    }
    features.extend(
        model
            .kernel_path_features()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    features.sort_unstable();
    features.dedup();
    Ok(features)
}

/// Which kernels a firmware built for a model links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The paths the model's layers take, and the reference kernels only if one needs them.
    Taken,
    /// Every path of the model's operators and their reference kernels: what a runtime that
    /// registers operators (TFLite-Micro) links.
    AllPaths,
}

/// The firmware's `--features` for `board`: the board alone plus the operators of the model
/// it embeds (`MOTE_MODEL_DIR` in `envs`, else the demo model), so flash holds only the
/// kernels that model runs (and DEQUANTIZE's when it has a fine-tuning set). A model that
/// cannot be read gets every operator; the firmware's build script then reports what is wrong.
fn features(board: Board, envs: &[(&str, &str)]) -> String {
    features_for(board, envs, Kernels::Taken)
}

/// [`features`] with the kernels `kernels` says.
fn features_for(board: Board, envs: &[(&str, &str)], kernels: Kernels) -> String {
    let dir = envs
        .iter()
        .find(|(key, _)| *key == "MOTE_MODEL_DIR")
        .map(|(_, value)| PathBuf::from(value))
        .unwrap_or_else(|| workspace_root().join("firmware/models/demo"));
    let ops = std::fs::read(dir.join("model.mote"))
        .ok()
        .and_then(|bytes| {
            let aligned = AlignedBytes::new(&bytes);
            let model = Model::parse(aligned.as_slice()).ok()?;
            model_op_features(&model).ok()
        })
        .unwrap_or_else(|| vec!["all-ops"]);
    let ops = match kernels {
        Kernels::Taken => ops,
        Kernels::AllPaths => {
            let paths = mote_core::ops::KernelPath::ALL.iter().map(|p| p.feature());
            let mut all: Vec<&str> = ops.into_iter().chain(paths).collect();
            all.push("reference-kernels");
            all.sort_unstable();
            all.dedup();
            all
        }
    };
    // The operator and kernel features are mote-core's own (the firmware has only boards).
    // Fine-tuning on the device dequantizes the backbone's features with DEQUANTIZE's kernel.
    let finetune = dir.join("finetune_inputs.i8").exists() && !ops.contains(&"op-dequantize");
    let mut features = format!("board-{}", board.feature());
    if finetune {
        features.push_str(",mote-core/op-dequantize");
    }
    for op in ops {
        features.push_str(",mote-core/");
        features.push_str(op);
    }
    features
}

/// The workspace this `mote` was built from; the firmware's sources live there.
pub fn workspace_root() -> &'static Path {
    // host/ is one level below the workspace root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo build` of the release firmware with exactly these features, nothing else set, for
/// the default board's target.
pub fn cargo_build(features: &str) -> Command {
    cargo_build_for(Board::Qemu, features)
}

/// `cargo build` of the release firmware for `board`'s target and core, with exactly these
/// features.
pub fn cargo_build_for(board: Board, features: &str) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "mote-firmware",
            "--target",
            board.target(),
        ])
        .args(["--no-default-features", "--features", features]);
    if !board.rustflags().is_empty() {
        // Added to the caller's flags (CI's `-D warnings`), which an override would drop.
        let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
            Ok(encoded) if !encoded.is_empty() => {
                encoded.split('\x1f').map(str::to_string).collect()
            }
            _ => std::env::var("RUSTFLAGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        };
        flags.extend(board.rustflags().iter().map(|f| f.to_string()));
        cmd.env_remove("RUSTFLAGS")
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    }
    cmd
}

/// Builds the release firmware for `board` and returns the ELF's path.
///
/// `envs` are extra environment variables for the build (the firmware reads its model from one).
pub fn build(board: Board, envs: &[(&str, &str)]) -> Result<PathBuf> {
    build_board_with_features(board, &features(board, envs), envs)
}

/// [`build`] linking the kernels `kernels` says.
pub fn build_linking(board: Board, envs: &[(&str, &str)], kernels: Kernels) -> Result<PathBuf> {
    build_board_with_features(board, &features_for(board, envs, kernels), envs)
}

/// [`build`] for the default board with exactly these cargo features (a board and the
/// operators, paths and kernels wanted), not those of the model.
pub fn build_with_features(features: &str, envs: &[(&str, &str)]) -> Result<PathBuf> {
    build_board_with_features(Board::Qemu, features, envs)
}

/// [`build`] with exactly these cargo features, for `board`'s target and core.
pub fn build_board_with_features(
    board: Board,
    features: &str,
    envs: &[(&str, &str)],
) -> Result<PathBuf> {
    let mut cmd = cargo_build_for(board, features);
    cmd.args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in envs {
        match *key {
            // The build script reads it from firmware/: hand it an absolute path, so a
            // directory given relative to where `mote` runs is found.
            "MOTE_MODEL_DIR" => cmd.env(
                key,
                std::path::absolute(value).with_context(|| format!("model directory {value}"))?,
            ),
            _ => cmd.env(key, value),
        };
    }
    let output = cmd
        .output()
        .context("starting cargo to build the firmware")?;
    if !output.status.success() {
        bail!("building the firmware with features {features} failed (cargo's messages are above)");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "mote-firmware"
        {
            if let Some(path) = message["executable"].as_str() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    bail!("cargo built the firmware but reported no executable")
}
