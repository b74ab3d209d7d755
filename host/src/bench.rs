//! `mote bench`: build the firmware around each model, run it in QEMU, and report what it
//! costs: MACs, instructions per inference, instructions per MAC, arena, stack, flash, and on
//! the Cortex-M4F an estimate of its cycles (see [`crate::cycles`]).

use crate::cycles::{self, Estimate};
use crate::firmware::{self, Board};
use crate::qemu::run_elf_on;
use crate::report::{flash_use, FirmwareReport, FlashUse};
use crate::AlignedBytes;
use anyhow::{bail, Context, Result};
use mote_core::format::DType;
use std::path::PathBuf;
use std::time::Duration;

/// A model to benchmark.
#[derive(Debug, Clone)]
pub struct BenchCase {
    /// Name in the table.
    pub name: String,
    /// The `.mote` blob.
    pub model: Vec<u8>,
    /// One or more int8 input vectors, back to back; the first one is the one timed.
    pub inputs: Vec<u8>,
    /// Expected outputs of the *last* vectors (e.g. TFLite-Micro's for golden inputs placed
    /// after the timed one), checked in the same run.
    pub expected: Option<Vec<u8>>,
}

/// What one model costs on an emulated core.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// The case's name.
    pub name: String,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Instructions per inference (first vector).
    pub instructions: u64,
    /// Planned arena bytes.
    pub arena: usize,
    /// The arena's lower bound.
    pub arena_lower_bound: usize,
    /// Peak stack bytes during an invoke.
    pub stack: Option<usize>,
    /// Flash use.
    pub flash: FlashUse,
    /// Runtime flash of the same firmware with every path of the model's operators and their
    /// reference kernels (TFLite-Micro's per-operator registration links as much), when
    /// measured.
    pub flash_all_paths: Option<usize>,
    /// Whether every output matched `expected` (None when nothing was expected).
    pub bit_exact: Option<bool>,
    /// How many vectors' outputs `expected` held.
    pub vectors_checked: usize,
    /// The firmware's full report (per-layer profile included).
    pub report: FirmwareReport,
    /// Estimated Cortex-M4 cycles of the timed inference (first vector), when estimated.
    pub cycles: Option<Estimate>,
    /// Estimated Cortex-M4 cycles of each layer of the profiled inference, in the order of
    /// `report.layers` (empty when not estimated).
    pub layer_cycles: Vec<Estimate>,
}

impl BenchResult {
    /// Instructions per multiply-accumulate.
    pub fn instructions_per_mac(&self) -> f64 {
        self.instructions as f64 / self.macs.max(1) as f64
    }

    /// Estimated cycles per multiply-accumulate.
    pub fn cycles_per_mac(&self) -> Option<f64> {
        self.cycles
            .map(|c| c.cycles as f64 / self.macs.max(1) as f64)
    }
}

/// The core clock `mote bench` converts estimated cycles to milliseconds at, by default.
pub const DEFAULT_CLOCK_MHZ: f64 = 120.0;

/// Builds and runs the firmware for `case` in QEMU's Cortex-M4F.
pub fn run(case: &BenchCase) -> Result<BenchResult> {
    run_on(Board::Qemu, case)
}

/// Builds and runs the firmware for `case` on `board`, a QEMU board.
pub fn run_on(board: Board, case: &BenchCase) -> Result<BenchResult> {
    run_in(board, case, &std::env::temp_dir())
}

/// [`run_on`], staging the model and the firmware in a directory under `temp_root`, which is
/// removed when the run ends (with its result or an error).
pub fn run_in(board: Board, case: &BenchCase, temp_root: &std::path::Path) -> Result<BenchResult> {
    run_staged(board, case, temp_root, Extras::default())
}

/// What a run measures besides the run itself, each at the cost of more work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// A second, traced run that estimates the timed inference's Cortex-M4 cycles; only the
    /// Cortex-M4F board (`Board::Qemu`) has a cycle model.
    pub cycles: bool,
    /// A second firmware build with every path of the model's operators, for its flash.
    pub all_paths_flash: bool,
}

/// [`run_on`], plus the cycle estimate.
pub fn run_with_cycles(board: Board, case: &BenchCase) -> Result<BenchResult> {
    let extras = Extras {
        cycles: true,
        all_paths_flash: false,
    };
    run_measuring(board, case, extras)
}

/// [`run_on`], plus what `extras` asks for.
pub fn run_measuring(board: Board, case: &BenchCase, extras: Extras) -> Result<BenchResult> {
    if extras.cycles && board != Board::Qemu {
        bail!("the cycle estimate models the Cortex-M4: run it on the qemu board, not {board:?}");
    }
    run_staged(board, case, &std::env::temp_dir(), extras)
}

fn run_staged(
    board: Board,
    case: &BenchCase,
    temp_root: &std::path::Path,
    extras: Extras,
) -> Result<BenchResult> {
    if board.qemu_machine().is_none() {
        bail!("mote bench runs in QEMU: {board:?} is not a QEMU board");
    }
    let aligned = AlignedBytes::new(&case.model);
    let model = mote_core::Model::parse(aligned.as_slice())
        .map_err(|e| anyhow::anyhow!("{}: invalid model: {e}", case.name))?;
    let macs = crate::inspect::layers(&model)
        .map_err(anyhow::Error::msg)?
        .iter()
        .map(|l| l.macs)
        .sum();

    let name = format!("mote-bench-{}-{}", board.feature(), sanitize(&case.name));
    let staging = crate::TempDir::new_in(temp_root, &name)
        .with_context(|| format!("creating a directory in {}", temp_root.display()))?;
    let dir = staging.path();
    std::fs::write(dir.join("model.mote"), &case.model)?;
    std::fs::write(dir.join("test_inputs.i8"), &case.inputs)?;
    let envs = [(
        "MOTE_MODEL_DIR",
        dir.to_str().context("temp path is not UTF-8")?,
    )];
    let flash_all_paths = match extras.all_paths_flash {
        true => {
            let elf = firmware::build_linking(board, &envs, firmware::Kernels::AllPaths)?;
            Some(flash_use(&elf)?.runtime)
        }
        false => None,
    };
    let elf = firmware::build(board, &envs)?;
    let elf_copy: PathBuf = dir.join("firmware.elf");
    std::fs::copy(&elf, &elf_copy)?;
    let run = run_elf_on(board, &elf_copy, Duration::from_secs(600), |_| {})?;
    if !run.success() {
        let last = run.log.last().map(|l| l.to_string()).unwrap_or_default();
        bail!(
            "{}: the firmware failed (exit {}): {last}",
            case.name,
            run.exit_code
        );
    }
    let report = FirmwareReport::from_log(&run.log)?;
    let flash = flash_use(&elf_copy)?;
    let (cycles, layer_cycles) = match extras.cycles {
        true => {
            let (total, layers) = estimate(&elf_copy, &report)
                .with_context(|| format!("{}: estimating cycles", case.name))?;
            (Some(total), layers)
        }
        false => (None, Vec::new()),
    };
    Ok(BenchResult {
        name: case.name.clone(),
        macs,
        instructions: report.inferences[0].cost,
        arena: model.arena_size(),
        arena_lower_bound: model.arena_lower_bound(),
        stack: report.stack_peak,
        flash,
        flash_all_paths,
        bit_exact: case.expected.as_ref().map(|e| {
            let got = report.output_bytes();
            got.len() >= e.len() && got[got.len() - e.len()..] == e[..]
        }),
        vectors_checked: case.expected.as_ref().map_or(0, |e| {
            let per_vector = report.inferences.first().map_or(0, |i| i.output.len());
            e.len() / per_vector.max(1)
        }),
        report,
        cycles,
        layer_cycles,
    })
}

/// The estimated cycles of the firmware's timed inference, and of each layer of its profiled
/// one (which must be as many as the report's layers).
fn estimate(elf: &std::path::Path, report: &FirmwareReport) -> Result<(Estimate, Vec<Estimate>)> {
    let total = cycles::estimate_elf(elf, cycles::MOTE_TIMED_SYMBOL, TRACE_TIMEOUT)?;
    let markers = (cycles::MOTE_LAYER_BEGIN, cycles::MOTE_LAYER_END);
    let layers = cycles::estimate_segments(elf, markers, report.layers.len(), TRACE_TIMEOUT)?;
    if layers.len() != report.layers.len() {
        bail!(
            "the trace has {} layers, the firmware's profile {}",
            layers.len(),
            report.layers.len()
        );
    }
    Ok((total, layers))
}

/// Stack peaks: the invoke's below the harness, and the whole run's from the top of the stack.
fn stack_cell(r: &BenchResult) -> String {
    let bytes = |v: Option<usize>| v.map_or("-".into(), |v| v.to_string());
    format!("{} / {}", bytes(r.stack), bytes(r.report.stack_from_reset))
}

/// Statics (arena and decoded operators included) plus the stack from reset: all the RAM the
/// run used.
fn total_ram(r: &BenchResult) -> String {
    r.report
        .stack_from_reset
        .map_or("-".into(), |stack| (r.flash.statics + stack).to_string())
}

/// How long a traced run may take: logging every executed block makes QEMU much slower.
const TRACE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The estimated-cycles cells of a row: cycles, CPI, cycles per MAC, milliseconds.
fn cycle_cells(r: &BenchResult, clock_mhz: f64) -> String {
    match (r.cycles, r.cycles_per_mac()) {
        (Some(c), Some(per_mac)) => format!(
            "{} | {:.2} | {per_mac:.2} | {:.2}",
            c.cycles,
            c.cpi(),
            c.millis(clock_mhz)
        ),
        _ => "- | - | - | -".into(),
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Reference figures for a model: TFLite-Micro + CMSIS-NN in the same emulator.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// Instructions per inference.
    pub instructions: u64,
    /// Arena bytes.
    pub arena: usize,
    /// Bytes of the arena's activation section (the rest is TFLite-Micro's per-operator
    /// data), where known.
    pub activations: Option<usize>,
    /// Runtime flash bytes (no model), where measured.
    pub flash: Option<usize>,
}

/// One table: a row per model, and where a reference exists, the ratios against it;
/// estimated cycles in milliseconds at [`DEFAULT_CLOCK_MHZ`].
pub fn table(results: &[(BenchResult, Option<Reference>)]) -> String {
    table_at(results, DEFAULT_CLOCK_MHZ)
}

/// [`table`], with estimated cycles in milliseconds at a core clock of `clock_mhz`.
pub fn table_at(results: &[(BenchResult, Option<Reference>)], clock_mhz: f64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| model | MACs | instructions | instr/MAC | est. M4 cycles | CPI | cycles/MAC | ms @ {clock_mhz} MHz | parse | arena (lower bound) | decoded ops | stack: invoke / from reset | total RAM | flash: runtime (all paths) + model | bit-exact | vs TFLM+CMSIS-NN: instr, arena (its activations), flash |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (r, reference) in results {
        let versus = match reference {
            Some(t) => format!(
                "{:.2}x, {:.2}x ({}), {}",
                r.instructions as f64 / t.instructions as f64,
                r.arena as f64 / t.arena as f64,
                t.activations
                    .map_or("-".into(), |a| format!("{:.2}x", r.arena as f64 / a as f64)),
                t.flash.map_or("-".into(), |f| format!(
                    "{:.2}x",
                    r.flash.runtime as f64 / f as f64
                ))
            ),
            None => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} | {} | {} ({}) | {} | {} | {} | {} ({}) + {} | {} | {} |",
            r.name,
            r.macs,
            r.instructions,
            r.instructions_per_mac(),
            cycle_cells(r, clock_mhz),
            r.report.parse_cost,
            r.arena,
            r.arena_lower_bound,
            r.report.decoded,
            stack_cell(r),
            total_ram(r),
            r.flash.runtime,
            r.flash_all_paths.map_or("-".into(), |f| f.to_string()),
            r.flash.model,
            match r.bit_exact {
                Some(true) => format!("yes, {} vectors", r.vectors_checked),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
            versus
        );
    }
    s
}

/// Instructions per inference, a row per model and a column per board's core, each with
/// whether the run reproduced its expected outputs (`-`: nothing to check; an empty cell: the
/// model was not run there).
pub fn cores_table(per_board: &[(Board, Vec<BenchResult>)]) -> String {
    use std::fmt::Write;
    let mut names: Vec<&str> = Vec::new();
    for (_, results) in per_board {
        for r in results {
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
    }
    let mut s = String::from("| model |");
    for (board, _) in per_board {
        let machine = board.qemu_machine().map_or("", |(m, _)| m);
        let _ = write!(s, " {} ({machine}) |", board.core());
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(per_board.len()));
    s.push('\n');
    for name in names {
        let _ = write!(s, "| {name} |");
        for (_, results) in per_board {
            match results.iter().find(|r| r.name == name) {
                Some(r) => {
                    let exact = match r.bit_exact {
                        Some(true) => "bit-exact",
                        Some(false) => "NOT bit-exact",
                        None => "-",
                    };
                    let _ = write!(s, " {} ({exact}) |", r.instructions);
                }
                None => s.push_str(" |"),
            }
        }
        s.push('\n');
    }
    s
}

/// One input vector for every input of `model`: element `i` of each is
/// `p = (i * 7 % 256) - 128` (the input TFLite-Micro's published figures were measured with,
/// for int8) in the input's own type: `p + 128` for uint8, `p / 32` for float32.
pub fn reference_vector(model: &mote_core::Model) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for k in 0..model.input_count() {
        let t = model.input(k).map_err(anyhow::Error::msg)?;
        let pattern = (0..t.shape.elements().unwrap_or(0)).map(|i| ((i * 7) % 256) as i32 - 128);
        match t.dtype() {
            DType::I8 => bytes.extend(pattern.map(|p| p as u8)),
            DType::U8 => bytes.extend(pattern.map(|p| (p + 128) as u8)),
            DType::I16 => bytes.extend(pattern.flat_map(|p| (p as i16).to_le_bytes())),
            DType::I32 => bytes.extend(pattern.flat_map(|p| p.to_le_bytes())),
            DType::F32 => bytes.extend(pattern.flat_map(|p| (p as f32 / 32.0).to_le_bytes())),
        }
    }
    Ok(bytes)
}

/// TFLite-Micro + CMSIS-NN on QEMU mps2-an386, measured with the same method (SysTick x 40
/// under `-icount shift=0`, same input): MLPerf Tiny's published comparison point for mote.
pub fn tflm_reference(model_stem: &str) -> Option<Reference> {
    let (instructions, arena, activations, flash) = match model_stem {
        "kws_ref_model" => (7_700_253, 22_820, 16_000, Some(54_388)),
        "vww_96_int8" => (24_101_560, 100_708, 73_728, Some(54_388)),
        "pretrainedResnet_quant" => (29_860_813, 54_996, 49_152, Some(52_180)),
        "ad01_int8" => (582_893, 2_580, 768, Some(29_632)),
        "str_ww_ref_model" => (2_226_960, 16_596, 6_656, None),
        _ => return None,
    };
    Some(Reference {
        instructions,
        arena,
        activations: Some(activations),
        flash,
    })
}

/// The five MLPerf Tiny models in `dir` (the repo's tests/mlperf), each timed on the reference
/// input and then checked against up to `check_vectors` of its TFLite-Micro golden vectors
/// (random ones, then real ones where there are).
pub fn mlperf_suite(
    dir: &std::path::Path,
    check_vectors: usize,
) -> Result<Vec<(BenchCase, Option<Reference>)>> {
    let cases: [(&str, &[&str]); 5] = [
        ("kws_ref_model", &["kws_rand", "kws_real"]),
        ("vww_96_int8", &["vww_rand"]),
        ("pretrainedResnet_quant", &["ic_rand", "ic_zero"]),
        ("ad01_int8", &["ad_real"]),
        ("str_ww_ref_model", &["sww_rand", "sww_real"]),
    ];
    let mut suite = Vec::new();
    for (stem, goldens) in cases {
        let tflite = std::fs::read(dir.join(format!("{stem}.tflite")))
            .with_context(|| format!("reading {stem}.tflite in {}", dir.display()))?;
        let model = crate::tflite::import_tflite(&tflite)?.bytes;
        let aligned = AlignedBytes::new(&model);
        let parsed = mote_core::Model::parse(aligned.as_slice()).map_err(anyhow::Error::msg)?;
        let in_len = parsed.input(0).map_err(anyhow::Error::msg)?.record.byte_len as usize;
        let out_len = parsed
            .output(0)
            .map_err(anyhow::Error::msg)?
            .record
            .byte_len as usize;
        let mut inputs = reference_vector(&parsed)?;
        let mut expected = Vec::new();
        for golden in goldens {
            let golden_in = std::fs::read(dir.join(format!("golden/{golden}_in.i8")))?;
            let golden_out = std::fs::read(dir.join(format!("golden/{golden}_out_tflm.i8")))?;
            let left = check_vectors - expected.len() / out_len.max(1);
            let n = left.min(golden_in.len() / in_len);
            inputs.extend_from_slice(&golden_in[..n * in_len]);
            expected.extend_from_slice(&golden_out[..n * out_len]);
        }
        suite.push((
            BenchCase {
                name: stem.to_string(),
                model,
                inputs,
                expected: Some(expected),
            },
            tflm_reference(stem),
        ));
    }
    Ok(suite)
}
