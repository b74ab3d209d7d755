//! Running firmware on QEMU's Cortex-M machines (`mps2-an386`, the Cortex-M4F, by default) and
//! decoding its defmt log.
//!
//! The firmware writes raw defmt frames to semihosting stdout; they are decoded here with the
//! ELF's own interning table, so the log reads as text while the device never formats a string.

use crate::firmware::Board;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The emulator binary mote drives.
pub const QEMU: &str = "qemu-system-arm";

/// One decoded log line from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `None` for `defmt::println!`, else the level's name (`ERROR`, `INFO`, ...).
    pub level: Option<String>,
    /// The formatted message.
    pub text: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.level {
            Some(level) => write!(f, "{level:<5} {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// What a finished QEMU run produced.
#[derive(Debug, Clone)]
pub struct QemuRun {
    /// Every decoded log line, in order.
    pub log: Vec<LogLine>,
    /// The firmware's semihosting exit status: 0 for success.
    pub exit_code: i32,
}

impl QemuRun {
    /// Whether the firmware exited with success.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Whether `qemu-system-arm` can be started on this machine.
pub fn qemu_available() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The QEMU command line for `elf` on the default machine (`mps2-an386`, Cortex-M4F):
/// instruction counting on, semihosting for log and exit.
pub fn qemu_command(elf: &Path) -> Command {
    qemu_machine_command("mps2-an386", "cortex-m4", elf)
}

/// [`qemu_command`] for `board`'s machine; an error for a board QEMU does not emulate.
pub fn qemu_command_for(board: Board, elf: &Path) -> Result<Command> {
    match board.qemu_machine() {
        Some((machine, cpu)) => Ok(qemu_machine_command(machine, cpu, elf)),
        None => bail!("QEMU does not emulate the {board:?} board: run it with probe-rs"),
    }
}

fn qemu_machine_command(machine: &str, cpu: &str, elf: &Path) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-machine", machine, "-cpu", cpu])
        .args(["-nographic", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        // One instruction per virtual ns: SysTick then counts one tick per core clock period
        // of instructions (40 on the 25 MHz MPS2 machines).
        .args(["-icount", "shift=0"])
        .arg("-kernel")
        .arg(elf);
    cmd
}

/// Runs `elf` in QEMU (the default machine) until the firmware exits or `timeout` passes,
/// handing every decoded log line to `on_line` as it arrives.
pub fn run_elf(elf: &Path, timeout: Duration, on_line: impl FnMut(&LogLine)) -> Result<QemuRun> {
    run_elf_on(Board::Qemu, elf, timeout, on_line)
}

/// [`run_elf`] on `board`'s QEMU machine.
pub fn run_elf_on(
    board: Board,
    elf: &Path,
    timeout: Duration,
    mut on_line: impl FnMut(&LogLine),
) -> Result<QemuRun> {
    let mut command = qemu_command_for(board, elf)?;
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let table = defmt_decoder::Table::parse(&elf_bytes)
        .with_context(|| format!("reading the defmt table of {}", elf.display()))?
        .ok_or_else(|| {
            anyhow!(
                "{} has no defmt table: is it a mote firmware ELF?",
                elf.display()
            )
        })?;

    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "{QEMU} not found: install it (Debian/Ubuntu: `sudo apt-get install qemu-system-arm`)"
            ),
            _ => anyhow!("starting {QEMU}: {e}"),
        })?;

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().context("QEMU stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().context("QEMU stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut decoder = table.new_stream_decoder();
    let mut log = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut decode_available = |decoder: &mut Box<
        dyn defmt_decoder::StreamDecoder + Send + Sync + '_,
    >,
                                log: &mut Vec<LogLine>|
     -> Result<()> {
        loop {
            match decoder.decode() {
                Ok(frame) => {
                    let line = LogLine {
                        level: frame.level().map(|l| l.as_str().to_uppercase()),
                        text: frame.display_message().to_string(),
                    };
                    on_line(&line);
                    log.push(line);
                }
                Err(defmt_decoder::DecodeError::UnexpectedEof) => return Ok(()),
                Err(defmt_decoder::DecodeError::Malformed) => {
                    bail!("the firmware's log is malformed: does the ELF match the running image?")
                }
            }
        }
    };

    let status = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(bytes) => {
                decoder.received(&bytes);
                decode_available(&mut decoder, &mut log)?;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the firmware did not exit within {:.0} s (log so far: {} lines)",
                timeout.as_secs_f64(),
                log.len()
            );
        }
    };
    let _ = reader.join();
    for bytes in rx.try_iter() {
        decoder.received(&bytes);
    }
    decode_available(&mut decoder, &mut log)?;
    let stderr_text = stderr_reader.join().unwrap_or_default();

    let exit_code = match status.code() {
        Some(code) => code,
        None => bail!("{QEMU} was killed by a signal; its stderr:\n{stderr_text}"),
    };
    if exit_code != 0 && log.is_empty() && !stderr_text.trim().is_empty() {
        bail!("{QEMU} failed (exit {exit_code}):\n{stderr_text}");
    }
    Ok(QemuRun { log, exit_code })
}
