//! Reading what the firmware reports (its decoded defmt log) and what its ELF occupies.

use crate::qemu::LogLine;
use anyhow::{anyhow, bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags};
use std::path::Path;

/// One inference as the firmware printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    /// Every output tensor's bytes, in output order, back to back.
    pub output: Vec<u8>,
    /// Its cost in the board's unit.
    pub cost: u64,
}

/// Everything a firmware run reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareReport {
    /// `instructions` (QEMU) or `cycles` (hardware).
    pub unit: String,
    /// Model bytes, operator count, planned arena bytes, cost of `Model::parse`.
    pub model_bytes: usize,
    /// Operators.
    pub ops: usize,
    /// Arena bytes.
    pub arena: usize,
    /// Bytes of RAM holding the decoded operators (0 if the firmware does not report it).
    pub decoded: usize,
    /// Cost of parsing and validating the model.
    pub parse_cost: u64,
    /// One entry per input vector, in order.
    pub inferences: Vec<Inference>,
    /// Per-operator cost of one profiled invoke.
    pub layers: Vec<LayerCost>,
    /// Peak stack bytes during an invoke (painted), if reported.
    pub stack_peak: Option<usize>,
    /// Peak stack bytes of the whole run from the top of the stack (boot, parse, every
    /// invoke, logging, fine-tuning), if reported.
    pub stack_from_reset: Option<usize>,
}

/// One operator of a profiled invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCost {
    /// The operator's name (`CONV_2D`, ...).
    pub op: String,
    /// What it cost, in the report's unit.
    pub cost: u64,
    /// Its peak stack bytes below the harness (painted), if the firmware measured it.
    pub stack: Option<usize>,
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn number<T: std::str::FromStr>(text: &str, key: &str) -> Result<T> {
    field(text, key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("`{key}=` missing or not a number in `{text}`"))
}

impl FirmwareReport {
    /// Parses the firmware's log lines.
    pub fn from_log(log: &[LogLine]) -> Result<Self> {
        let mut r = FirmwareReport::default();
        let mut pending = Vec::new();
        for line in log {
            let t = line.text.as_str();
            if let Some(rest) = t.strip_prefix("cost unit ") {
                r.unit = rest.split_whitespace().next().unwrap_or("").to_string();
            } else if t.starts_with("model ") {
                r.model_bytes = number(t, "bytes")?;
                r.ops = number(t, "ops")?;
                r.arena = number(t, "arena")?;
                r.decoded = number(t, "decoded").unwrap_or(0);
                r.parse_cost = number(t, "parse")?;
            } else if let Some(rest) = t.strip_prefix("output ") {
                let bytes = parse_output(rest).with_context(|| format!("in `{t}`"))?;
                pending.extend(bytes);
            } else if let Some(rest) = t.strip_prefix("invoke ") {
                let cost = parse_cost(rest).with_context(|| format!("in `{t}`"))?;
                let output = std::mem::take(&mut pending);
                r.inferences.push(Inference { output, cost });
            } else if let Some(rest) = t.strip_prefix("layer ") {
                let w: Vec<&str> = rest.split_whitespace().collect();
                let (op, cost, stack) = match w.as_slice() {
                    [_, op, cost] => (op, cost, None),
                    [_, op, cost, stack] => (op, cost, Some(stack.parse()?)),
                    _ => bail!("unreadable layer line `{t}`"),
                };
                let (op, cost) = (op.to_string(), cost.parse()?);
                r.layers.push(LayerCost { op, cost, stack });
            } else if let Some(rest) = t.strip_prefix("stack from reset ") {
                r.stack_from_reset = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            } else if let Some(rest) = t.strip_prefix("stack peak ") {
                r.stack_peak = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        }
        if r.unit.is_empty() || r.inferences.is_empty() {
            bail!("the firmware reported no inference (is the log complete?)");
        }
        Ok(r)
    }

    /// All outputs back to back, as raw bytes (the golden files' layout).
    pub fn output_bytes(&self) -> Vec<u8> {
        self.inferences
            .iter()
            .flat_map(|i| i.output.iter().copied())
            .collect()
    }
}

/// `3 0 [170, 173]` (vector, output index, bytes) -> the bytes.
fn parse_output(rest: &str) -> Result<Vec<u8>> {
    let (_, values) = rest
        .split_once('[')
        .and_then(|(head, r)| Some((head, r.split_once(']')?.0)))
        .context("no [values]")?;
    if values.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(values
        .split(',')
        .map(|v| v.trim().parse::<u8>())
        .collect::<Result<Vec<_>, _>>()?)
}

/// `3 415200 instructions` (vector, cost, unit) -> the cost.
fn parse_cost(rest: &str) -> Result<u64> {
    let mut words = rest.split_whitespace();
    let cost = words.nth(1).context("no cost")?;
    Ok(cost.parse()?)
}

/// Flash bytes of a firmware ELF, split into the model (and its test inputs) and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashUse {
    /// Code, read-only data and initialized data, without the embedded model and inputs.
    pub runtime: usize,
    /// The embedded `.mote` blob.
    pub model: usize,
    /// The embedded input vectors.
    pub inputs: usize,
    /// RAM the image reserves (`.data`, `.bss`, `.uninit`): the arena and the decoded
    /// operators included, the stack not.
    pub statics: usize,
}

/// Measures an ELF's flash use (sections loaded into flash; the model and inputs found by
/// their symbols).
pub fn flash_use(elf: &Path) -> Result<FlashUse> {
    let data = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let file = object::File::parse(&*data).context("parsing the ELF")?;
    let (mut total, mut statics) = (0usize, 0usize);
    for section in file.sections() {
        let alloc = matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_ALLOC) != 0);
        let name = section.name().unwrap_or("");
        // .bss and .uninit take RAM only; everything else allocated is stored in flash
        // (.data is copied from flash to RAM at boot, so it takes both).
        if alloc && !matches!(name, ".bss" | ".uninit") && section.size() > 0 {
            total += section.size() as usize;
        }
        if alloc && matches!(name, ".data" | ".bss" | ".uninit") {
            statics += section.size() as usize;
        }
    }
    let symbol_size = |suffix: &str| {
        file.symbols()
            .filter(|s| {
                s.name()
                    .is_ok_and(|n| n.contains("mote_firmware") && n.contains(suffix))
            })
            .map(|s| s.size() as usize)
            .max()
            .unwrap_or(0)
    };
    let model = symbol_size("5MODEL");
    let inputs = symbol_size("11TEST_INPUTS");
    Ok(FlashUse {
        runtime: total.saturating_sub(model + inputs),
        model,
        inputs,
        statics,
    })
}
