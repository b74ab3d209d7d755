//! Building the firmware for a board from the host, with cargo.

use anyhow::{bail, Context, Result};
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

/// The workspace this `mote` was built from; the firmware's sources live there.
pub fn workspace_root() -> &'static Path {
    // host/ is one level below the workspace root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Builds the release firmware for `board` and returns the ELF's path.
///
/// `envs` are extra environment variables for the build (the firmware reads its model from one).
pub fn build(board: Board, envs: &[(&str, &str)]) -> Result<PathBuf> {
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
        .args(["--no-default-features", "--features", board.feature()])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let output = cmd
        .output()
        .context("starting cargo to build the firmware")?;
    if !output.status.success() {
        bail!("building the firmware for {board:?} failed (cargo's messages are above)");
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
