//! Building the firmware for a board from the host, with cargo.

use crate::AlignedBytes;
use anyhow::{bail, Context, Result};
use mote_core::Model;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The thumb target of every board mote supports today (Cortex-M4F).
pub const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

/// A board the firmware can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Board {
    /// QEMU `mps2-an386` (Cortex-M4F, semihosting): no hardware needed.
    Qemu,
    /// Nordic nRF52840-DK, flashed through probe-rs.
    Nrf52840,
}

impl Board {
    /// The firmware's cargo feature for this board.
    pub fn feature(self) -> &'static str {
        match self {
            Board::Qemu => "qemu",
            Board::Nrf52840 => "nrf52840",
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

/// The firmware's `--features` for `board`: the board alone plus the operators of the model
/// it embeds (`MOTE_MODEL_DIR` in `envs`, else the demo model), so flash holds only the
/// kernels that model runs (and DEQUANTIZE's when it has a fine-tuning set). A model that
/// cannot be read gets every operator; the firmware's build script then reports what is wrong.
fn features(board: Board, envs: &[(&str, &str)]) -> String {
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

/// `cargo build` of the release firmware with exactly these features, nothing else set.
pub fn cargo_build(features: &str) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "mote-firmware",
            "--target",
            FIRMWARE_TARGET,
        ])
        .args(["--no-default-features", "--features", features]);
    cmd
}

/// Builds the release firmware for `board` and returns the ELF's path.
///
/// `envs` are extra environment variables for the build (the firmware reads its model from one).
pub fn build(board: Board, envs: &[(&str, &str)]) -> Result<PathBuf> {
    build_with_features(&features(board, envs), envs)
}

/// [`build`] with exactly these cargo features (a board and the operators, paths and kernels
/// wanted), not those of the model.
pub fn build_with_features(features: &str, envs: &[(&str, &str)]) -> Result<PathBuf> {
    let mut cmd = cargo_build(features);
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
