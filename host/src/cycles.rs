//! Estimated Cortex-M4 cycles of a firmware run in QEMU.
//!
//! QEMU counts instructions, not cycles. Here QEMU logs every translation block (TB) it
//! compiles (`-d in_asm`: the addresses of its instructions) and every TB it executes (`-d
//! exec,nochain`: with chaining off, each execution is logged). Each instruction is decoded from
//! the ELF's code bytes and priced with the Cortex-M4 Technical Reference Manual's timings
//! (ARM DDI 0439, tables 3-1 and 7-1), with these simplifications:
//!
//! - Taken branches cost 1 + [`PIPELINE_REFILL`] (the TRM's P is 1 to 3: 2 is its middle).
//!   A branch is taken when the next executed TB does not start at its fall-through address.
//! - A single load or store (LDR*, STR*, LDREX, STREX) costs 2, or 1 directly after a single
//!   load whose loaded register is not in its address (the TRM's pipelining rule). A load or
//!   store with base writeback neither pipelines nor lets the next one pipeline ("LDR Rx!
//!   is not normally pipelined"); nothing pipelines after a store.
//! - LDM/STM/PUSH/POP and VLDM/VSTM/VPUSH/VPOP cost 1 + N (+ P when they load the PC);
//!   LDRD/STRD 3; TBB/TBH and LDR PC 2 + P; SDIV/UDIV [`DIVIDE_CYCLES`] (the TRM's 2 to 12
//!   depend on the operands: 7 is the middle); VDIV/VSQRT 14, VMLA/VMLS/VNMLA/VNMLS and the
//!   fused multiply-adds 3, VLDR/VSTR and two-register VMOV 2; every other instruction 1
//!   (all multiplies and MACs, long ones included, are single-cycle on the M4).
//! - Memory is zero-wait-state (no flash wait states), and exception entry and return (12
//!   cycles each on the M4) are not added: an interrupt in a timed region (a SysTick wrap,
//!   every 2^24 ticks, on long runs) counts only its handler's instructions.
//!
//! Only a timed region counts: one call of a function, from the first execution of its
//! entry until control comes back to the instruction after the call (tail calls included);
//! or, for per-layer figures, each stretch between a call of a begin marker function and the
//! next call of an end marker (the markers' own bodies left out).

use anyhow::{anyhow, bail, Context, Result};
use object::{Object, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cycles a taken branch adds to refill the pipeline (the TRM's P, 1 to 3).
pub const PIPELINE_REFILL: u32 = 2;

/// Cycles of SDIV/UDIV (the TRM's 2 to 12, by operand values).
pub const DIVIDE_CYCLES: u32 = 7;

/// The function around the mote firmware's first timed invoke.
pub const MOTE_TIMED_SYMBOL: &str = "mote_timed_invoke";

/// The mote firmware calls this before each operator of its profiled invoke.
pub const MOTE_LAYER_BEGIN: &str = "mote_layer_begin";

/// ... and this after it.
pub const MOTE_LAYER_END: &str = "mote_layer_end";

/// TFLite-Micro's `tflite::MicroInterpreter::Invoke()`, the peer's timed region.
pub const TFLM_INVOKE_SYMBOL: &str = "_ZN6tflite16MicroInterpreter6InvokeEv";

/// An instruction's timing class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One cycle: data processing, multiplies and MACs, IT, hints, most VFP operations.
    Single,
    /// A single-register load: `address` and `dest` are register masks.
    Load {
        /// Registers the address is computed from.
        address: u16,
        /// Registers loaded.
        dest: u16,
        /// Whether the base register is written back.
        writeback: bool,
    },
    /// A single-register store.
    Store {
        /// Registers the address is computed from.
        address: u16,
        /// Whether the base register is written back.
        writeback: bool,
    },
    /// LDM/STM/PUSH/POP and their VFP forms: 1 + `n` (+ P when they load the PC).
    Multiple {
        /// Words transferred.
        n: u8,
        /// Whether the PC is loaded.
        loads_pc: bool,
    },
    /// LDRD/STRD: 1 + 2.
    Dual,
    /// A branch: `base` cycles, plus P when taken.
    Branch {
        /// Cycles when not taken.
        base: u8,
        /// BL/BLX: the return address is the next instruction's.
        call: bool,
    },
    /// SDIV/UDIV.
    Divide,
    /// A fixed number of cycles (VFP operations).
    Fixed(u8),
}

/// Decodes the Thumb instruction starting with halfword `hw1` (`hw2` follows it): its size in
/// bytes and its timing class.
pub fn decode(hw1: u16, hw2: u16) -> (u8, Kind) {
    if hw1 >> 11 >= 0b11101 {
        (4, decode32(hw1, hw2))
    } else {
        (2, decode16(hw1))
    }
}

fn bit(reg: u16) -> u16 {
    1 << (reg & 15)
}

fn decode16(h: u16) -> Kind {
    let reg = |shift: u16| (h >> shift) & 7;
    match h >> 11 {
        0b01000 if h & 0x0400 == 0 => Kind::Single,
        0b01000 => {
            // ADD/CMP/MOV with high registers, BX/BLX: a PC destination branches.
            let op = (h >> 8) & 3;
            let rd = ((h >> 4) & 8) | (h & 7);
            match op {
                3 => Kind::Branch {
                    base: 1,
                    call: h & 0x80 != 0,
                },
                0 | 2 if rd == 15 => Kind::Branch {
                    base: 1,
                    call: false,
                },
                _ => Kind::Single,
            }
        }
        0b01001 => Kind::Load {
            address: bit(15),
            dest: bit(reg(8)),
            writeback: false,
        },
        0b01010 | 0b01011 => {
            let address = bit(reg(6)) | bit(reg(3));
            if (h >> 9) & 7 < 3 {
                Kind::Store {
                    address,
                    writeback: false,
                }
            } else {
                Kind::Load {
                    address,
                    dest: bit(reg(0)),
                    writeback: false,
                }
            }
        }
        0b01100..=0b10011 => {
            let sp_relative = h >> 12 == 0b1001;
            let (address, rt) = match sp_relative {
                true => (bit(13), reg(8)),
                false => (bit(reg(3)), reg(0)),
            };
            match h & 0x0800 != 0 {
                true => Kind::Load {
                    address,
                    dest: bit(rt),
                    writeback: false,
                },
                false => Kind::Store {
                    address,
                    writeback: false,
                },
            }
        }
        0b10110 | 0b10111 => decode16_misc(h),
        0b11000 | 0b11001 => Kind::Multiple {
            n: (h & 0xff).count_ones() as u8,
            loads_pc: false,
        },
        // Conditional branches; condition 111x is UDF and SVC.
        0b11010 | 0b11011 if (h >> 9) & 7 != 7 => Kind::Branch {
            base: 1,
            call: false,
        },
        0b11100 => Kind::Branch {
            base: 1,
            call: false,
        },
        _ => Kind::Single,
    }
}

fn decode16_misc(h: u16) -> Kind {
    let list = (h & 0x1ff).count_ones() as u8;
    if h & 0xfe00 == 0xb400 {
        Kind::Multiple {
            n: list,
            loads_pc: false,
        }
    } else if h & 0xfe00 == 0xbc00 {
        Kind::Multiple {
            n: list,
            loads_pc: h & 0x100 != 0,
        }
    } else if h & 0xf500 == 0xb100 {
        // CBZ/CBNZ
        Kind::Branch {
            base: 1,
            call: false,
        }
    } else {
        Kind::Single
    }
}

fn decode32(h1: u16, h2: u16) -> Kind {
    if h1 & 0x0400 != 0 && (h1 >> 11) & 3 != 0b10 {
        return coprocessor(h1, h2);
    }
    match (h1 >> 11) & 3 {
        0b01 if h1 & 0x0600 != 0 => Kind::Single,
        0b01 if h1 & 0x0040 == 0 => Kind::Multiple {
            n: h2.count_ones() as u8,
            loads_pc: h1 & 0x0010 != 0 && h2 & 0x8000 != 0,
        },
        0b01 => dual_exclusive_table(h1, h2),
        0b10 => branch_or_control(h1, h2),
        _ => {
            let op2 = (h1 >> 4) & 0x7f;
            if op2 & 0x71 == 0 {
                single_transfer(h1, h2, false)
            } else if matches!(op2 & 0x67, 0x01 | 0x03 | 0x05) {
                single_transfer(h1, h2, true)
            } else if op2 & 0x78 == 0x38 && matches!((h1 >> 4) & 7, 0b001 | 0b011) {
                Kind::Divide
            } else {
                Kind::Single
            }
        }
    }
}

fn dual_exclusive_table(h1: u16, h2: u16) -> Kind {
    let rn = h1 & 15;
    let rt = h2 >> 12;
    match ((h1 >> 7) & 3, (h1 >> 4) & 3) {
        (0 | 1, 0) => Kind::Store {
            address: bit(rn),
            writeback: false,
        },
        (1, 1) if (h2 >> 4) & 0xe == 0 => Kind::Branch {
            base: 2,
            call: false,
        },
        (0 | 1, 1) => Kind::Load {
            address: bit(rn),
            dest: bit(rt),
            writeback: false,
        },
        _ => Kind::Dual,
    }
}

fn branch_or_control(h1: u16, h2: u16) -> Kind {
    if h2 & 0x8000 == 0 {
        return Kind::Single;
    }
    match (h2 >> 12) & 0b101 {
        // Condition 111x here is MSR, MRS, hints and barriers.
        0b000 if (h1 >> 7) & 7 == 7 => Kind::Single,
        0b000 | 0b001 => Kind::Branch {
            base: 1,
            call: false,
        },
        0b101 => Kind::Branch {
            base: 1,
            call: true,
        },
        _ => Kind::Single,
    }
}

fn single_transfer(h1: u16, h2: u16, load: bool) -> Kind {
    let rn = h1 & 15;
    let rt = h2 >> 12;
    let register_offset = h1 & 0x80 == 0 && rn != 15 && (h2 >> 6) & 0x3f == 0;
    let writeback = h1 & 0x80 == 0 && rn != 15 && h2 & 0x0900 == 0x0900;
    let address = bit(rn) | if register_offset { bit(h2 & 15) } else { 0 };
    let word = (h1 >> 5) & 3 == 2;
    match (load, rt) {
        (true, 15) if word => Kind::Branch {
            base: 2,
            call: false,
        },
        // PLD/PLI: hints.
        (true, 15) => Kind::Single,
        (true, _) => Kind::Load {
            address,
            dest: bit(rt),
            writeback,
        },
        (false, _) => Kind::Store { address, writeback },
    }
}

fn coprocessor(h1: u16, h2: u16) -> Kind {
    if (h2 >> 9) & 7 != 0b101 {
        return Kind::Single;
    }
    let op1 = (h1 >> 4) & 0x3f;
    if op1 & 0x3e == 0x04 {
        // VMOV between two core registers and two singles or a double.
        Kind::Fixed(2)
    } else if op1 & 0x20 == 0 && op1 & 0x3a != 0 {
        if op1 & 0x13 == 0x10 || op1 & 0x13 == 0x11 {
            Kind::Fixed(2) // VLDR/VSTR
        } else {
            Kind::Multiple {
                n: (h2 & 0xff) as u8,
                loads_pc: false,
            }
        }
    } else if op1 & 0x30 == 0x20 && h2 & 0x10 == 0 {
        vfp_data(h1, h2)
    } else {
        Kind::Single
    }
}

fn vfp_data(h1: u16, h2: u16) -> Kind {
    match ((h1 >> 5) & 4) | ((h1 >> 4) & 3) {
        0 | 1 | 5 | 6 => Kind::Fixed(3),
        4 => Kind::Fixed(14),
        7 if h1 & 15 == 1 && (h2 >> 6) & 3 == 3 => Kind::Fixed(14),
        _ => Kind::Single,
    }
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Its address.
    pub addr: u32,
    /// 2 or 4 bytes.
    pub size: u8,
    /// Its timing class.
    pub kind: Kind,
}

impl Insn {
    /// The fall-through address.
    pub fn end(&self) -> u32 {
        self.addr.wrapping_add(u32::from(self.size))
    }
}

/// The code a firmware image loads: its segments' bytes by address.
#[derive(Debug, Clone, Default)]
pub struct Code {
    segments: Vec<(u32, Vec<u8>)>,
}

impl Code {
    /// The loadable segments of an ELF image.
    pub fn from_elf(elf: &[u8]) -> Result<Code> {
        let file = object::File::parse(elf).context("parsing the ELF")?;
        let mut segments = Vec::new();
        for segment in file.segments() {
            let data = segment.data().context("reading an ELF segment")?;
            if !data.is_empty() {
                let addr = u32::try_from(segment.address()).context("a 64-bit segment")?;
                segments.push((addr, data.to_vec()));
            }
        }
        Ok(Code { segments })
    }

    /// `bytes` at `base` (for tests and raw images).
    pub fn from_bytes(base: u32, bytes: &[u8]) -> Code {
        Code {
            segments: vec![(base, bytes.to_vec())],
        }
    }

    fn halfword(&self, addr: u32) -> Option<u16> {
        self.segments.iter().find_map(|(base, data)| {
            let at = usize::try_from(addr.checked_sub(*base)?).ok()?;
            let bytes = data.get(at..at + 2)?;
            Some(u16::from_le_bytes([bytes[0], bytes[1]]))
        })
    }

    /// The instruction at `addr`.
    pub fn insn(&self, addr: u32) -> Result<Insn> {
        let hw1 = self
            .halfword(addr)
            .ok_or_else(|| anyhow!("no code at {addr:#010x} in the ELF's segments"))?;
        let hw2 = self.halfword(addr.wrapping_add(2)).unwrap_or(0);
        let (size, kind) = decode(hw1, hw2);
        Ok(Insn { addr, size, kind })
    }
}

/// The estimate of a timed region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Instructions executed.
    pub instructions: u64,
    /// Estimated Cortex-M4 cycles.
    pub cycles: u64,
    /// Branches taken (each paid the refill).
    pub taken_branches: u64,
    /// Single-register loads and stores (two cycles each, unless pipelined).
    pub single_transfers: u64,
    /// Of those, the ones that pipelined after a load (one cycle each).
    pub pipelined: u64,
}

impl Estimate {
    /// What was priced since `earlier`, a snapshot of the same running estimate.
    fn since(&self, earlier: &Estimate) -> Estimate {
        Estimate {
            instructions: self.instructions - earlier.instructions,
            cycles: self.cycles - earlier.cycles,
            taken_branches: self.taken_branches - earlier.taken_branches,
            single_transfers: self.single_transfers - earlier.single_transfers,
            pipelined: self.pipelined - earlier.pipelined,
        }
    }

    /// Cycles per instruction.
    pub fn cpi(&self) -> f64 {
        self.cycles as f64 / self.instructions.max(1) as f64
    }

    /// Milliseconds at a core clock of `clock_mhz`.
    pub fn millis(&self, clock_mhz: f64) -> f64 {
        self.cycles as f64 / (clock_mhz * 1e3)
    }
}

/// Prices instructions in execution order.
#[derive(Debug, Default)]
struct Pricer {
    estimate: Estimate,
    /// The registers the previous instruction loaded, when it was a pipelinable load.
    after_load: Option<u16>,
}

impl Pricer {
    /// Prices one executed TB's instructions; `next_pc` is where execution went on.
    fn block(&mut self, insns: &[Insn], next_pc: Option<u32>) {
        for (i, insn) in insns.iter().enumerate() {
            let last = i + 1 == insns.len();
            let taken = last && next_pc != Some(insn.end());
            self.insn(insn.kind, taken);
        }
    }

    fn insn(&mut self, kind: Kind, taken: bool) {
        let refill = |taken: bool| if taken { PIPELINE_REFILL } else { 0 };
        let mut next_after_load = None;
        let cycles = match kind {
            Kind::Single => 1,
            Kind::Load {
                address, writeback, ..
            }
            | Kind::Store {
                address, writeback, ..
            } => {
                if let Kind::Load { dest, .. } = kind {
                    next_after_load = (!writeback).then_some(dest);
                }
                let pipelines = !writeback && self.after_load.is_some_and(|d| d & address == 0);
                self.estimate.single_transfers += 1;
                self.estimate.pipelined += u64::from(pipelines);
                if pipelines {
                    1
                } else {
                    2
                }
            }
            Kind::Multiple { n, loads_pc } => 1 + u32::from(n) + refill(loads_pc),
            Kind::Dual => 3,
            Kind::Branch { base, .. } => {
                self.estimate.taken_branches += u64::from(taken);
                u32::from(base) + refill(taken)
            }
            Kind::Divide => DIVIDE_CYCLES,
            Kind::Fixed(c) => u32::from(c),
        };
        self.after_load = next_after_load;
        self.estimate.instructions += 1;
        self.estimate.cycles += u64::from(cycles);
    }
}

/// What a trace times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The first call of the function at `entry`.
    Call {
        /// The function's address.
        entry: u32,
    },
    /// Every stretch between a call of the function at `begin` and one of that at `end`, up
    /// to `count` of them (then the rest of the run does not matter).
    Between {
        /// The begin marker's address.
        begin: u32,
        /// The end marker's address.
        end: u32,
        /// How many stretches to price (`usize::MAX`: to the end of the run).
        count: usize,
    },
}

/// Where the trace is relative to what it times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Before,
    Inside {
        return_to: u32,
    },
    Done,
    /// Between markers, since this snapshot of the running estimate.
    Segment(Estimate),
}

/// A logged TB execution not yet priced: the next one tells where it went.
#[derive(Debug)]
struct Pending {
    insns: Rc<[Insn]>,
    /// Whether it is inside what is timed.
    priced: bool,
    /// QEMU rewound the TB to re-execute from this address (an I/O access under icount).
    rewound_to: Option<u32>,
}

/// Reads QEMU's `-d in_asm,exec,nochain` log line by line and prices the timed region.
#[derive(Debug)]
pub struct TraceReader<'a> {
    code: &'a Code,
    timing: Timing,
    blocks: HashMap<u64, Rc<[Insn]>>,
    /// Addresses of the TB being listed by an `IN:` block.
    listing: Option<Vec<u32>>,
    /// The TB just listed, waiting for the execution line that gives its host pointer.
    translated: Option<Rc<[Insn]>>,
    pending: Option<Pending>,
    last_insn: Option<Insn>,
    region: Region,
    pricer: Pricer,
    segments: Vec<Estimate>,
}

impl<'a> TraceReader<'a> {
    /// A reader pricing what `timing` says in `code`.
    pub fn new(code: &'a Code, timing: Timing) -> TraceReader<'a> {
        let timing = match timing {
            Timing::Call { entry } => Timing::Call { entry: entry & !1 },
            Timing::Between { begin, end, count } => Timing::Between {
                begin: begin & !1,
                end: end & !1,
                count,
            },
        };
        TraceReader {
            code,
            timing,
            blocks: HashMap::new(),
            listing: None,
            translated: None,
            pending: None,
            last_insn: None,
            region: Region::Before,
            pricer: Pricer::default(),
            segments: Vec::new(),
        }
    }

    /// Whether the region has been priced: the rest of the log does not matter.
    pub fn done(&self) -> bool {
        self.region == Region::Done
    }

    /// Takes one line of the log; lines it does not know are ignored.
    pub fn line(&mut self, line: &str) -> Result<()> {
        if self.done() {
            return Ok(());
        }
        if line.starts_with("IN:") {
            self.end_listing()?;
            self.listing = Some(Vec::new());
        } else if let Some(listing) = self.listing.as_mut() {
            match listing_address(line) {
                Some(addr) => listing.push(addr),
                None if line.trim().is_empty() => self.end_listing()?,
                None => {}
            }
        } else if let Some(rest) = line.strip_prefix("Trace ") {
            let (ptr, pc) = parse_exec(rest)
                .ok_or_else(|| anyhow!("unexpected execution line in QEMU's log: {line}"))?;
            self.exec(ptr, pc)?;
        } else if line.starts_with("Stopped execution of TB chain before") {
            // The TB was not entered (the instruction budget ran out first).
            self.pending = None;
        } else if let Some(rest) =
            line.strip_prefix("cpu_io_recompile: rewound execution of TB to ")
        {
            let addr = u32::from_str_radix(rest.trim(), 16)
                .with_context(|| format!("unexpected line in QEMU's log: {line}"))?;
            if let Some(pending) = self.pending.as_mut() {
                pending.rewound_to = Some(addr);
            }
        }
        Ok(())
    }

    fn end_listing(&mut self) -> Result<()> {
        if let Some(addrs) = self.listing.take() {
            let insns = addrs
                .iter()
                .map(|&a| self.code.insn(a))
                .collect::<Result<Vec<_>>>()?;
            // QEMU's listing and the decoder must agree on where instructions start, or the
            // ELF is not the code QEMU runs (or the decoder misread a size).
            if let Some(pair) = insns.windows(2).find(|p| p[0].end() != p[1].addr) {
                bail!(
                    "QEMU ran an instruction at {:#010x} where the ELF's code has one at {:#010x} \
                     ending at {:#010x}: is this the ELF QEMU runs?",
                    pair[1].addr,
                    pair[0].addr,
                    pair[0].end()
                );
            }
            self.translated = Some(insns.into());
        }
        Ok(())
    }

    fn exec(&mut self, ptr: u64, pc: u32) -> Result<()> {
        self.end_listing()?;
        if let Some(tb) = self.translated.take() {
            if tb.first().map(|i| i.addr) == Some(pc) {
                self.blocks.insert(ptr, tb);
            }
        }
        if let Some(pending) = self.pending.take() {
            self.retire(pending, pc);
        }
        let priced = match self.timing {
            Timing::Call { entry } => self.enter_or_leave_call(entry, pc)?,
            Timing::Between { begin, end, count } => {
                self.enter_or_leave_segment((begin, end), count, pc)
            }
        };
        if self.done() {
            return Ok(());
        }
        let insns = self
            .blocks
            .get(&ptr)
            .cloned()
            .ok_or_else(|| anyhow!("QEMU executed a TB at {pc:#010x} it never listed"))?;
        self.pending = Some(Pending {
            insns,
            priced,
            rewound_to: None,
        });
        Ok(())
    }

    /// Follows the timed call as a TB at `pc` starts; whether that TB is inside it.
    fn enter_or_leave_call(&mut self, entry: u32, pc: u32) -> Result<bool> {
        match self.region {
            Region::Before if pc == entry => {
                let call = self
                    .last_insn
                    .filter(|i| matches!(i.kind, Kind::Branch { call: true, .. }))
                    .ok_or_else(|| {
                        anyhow!("the timed function at {pc:#010x} was entered without a call")
                    })?;
                self.region = Region::Inside {
                    return_to: call.end(),
                };
            }
            Region::Inside { return_to } if pc == return_to => self.region = Region::Done,
            _ => {}
        }
        Ok(matches!(self.region, Region::Inside { .. }))
    }

    /// Opens or closes a segment as a TB at `pc` starts (done after `count` segments);
    /// whether that TB is inside one.
    fn enter_or_leave_segment(&mut self, (begin, end): (u32, u32), count: usize, pc: u32) -> bool {
        if pc == begin {
            self.region = Region::Segment(self.pricer.estimate);
            return false;
        }
        if pc == end {
            if let Region::Segment(start) = self.region {
                self.segments.push(self.pricer.estimate.since(&start));
            }
            self.region = match self.segments.len() >= count {
                true => Region::Done,
                false => Region::Before,
            };
            return false;
        }
        matches!(self.region, Region::Segment(_))
    }

    /// Prices a finished TB execution (when inside the region); `next_pc` is where it went.
    fn retire(&mut self, pending: Pending, next_pc: u32) {
        let executed = match pending.rewound_to {
            Some(addr) => {
                let n = pending.insns.iter().take_while(|i| i.addr != addr).count();
                &pending.insns[..n]
            }
            None => &pending.insns[..],
        };
        if pending.priced {
            self.pricer.block(executed, Some(next_pc));
        }
        if let Some(last) = executed.last() {
            self.last_insn = Some(*last);
        }
    }

    /// The timed call's estimate, once it has returned.
    pub fn finish(self) -> Result<Estimate> {
        match self.region {
            Region::Done => Ok(self.pricer.estimate),
            Region::Before | Region::Segment(_) => {
                bail!("the run never called the timed function")
            }
            Region::Inside { .. } => {
                bail!("the timed function had not returned when the run ended")
            }
        }
    }

    /// The estimate of each stretch between the markers, in order.
    pub fn finish_segments(self) -> Result<Vec<Estimate>> {
        if let Region::Segment(_) = self.region {
            bail!("the run ended between a begin marker and its end marker");
        }
        if self.segments.is_empty() {
            bail!("the run never called the begin and end markers");
        }
        Ok(self.segments)
    }
}

/// The address of an `in_asm` listing line, `0x00000078:  f04f 22e0  mov.w ...`.
fn listing_address(line: &str) -> Option<u32> {
    let (addr, _) = line.strip_prefix("0x")?.split_once(':')?;
    u32::from_str_radix(addr, 16).ok()
}

/// The host pointer and guest pc of an execution line after `Trace `:
/// `0: 0x7efe04000100 [00800408/00000078/00000110/ff020200] Reset_Handler`.
fn parse_exec(rest: &str) -> Option<(u64, u32)> {
    let (_, rest) = rest.split_once(": 0x")?;
    let (ptr, rest) = rest.split_once(" [")?;
    let ptr = u64::from_str_radix(ptr, 16).ok()?;
    let pc = rest.split('/').nth(1)?;
    Some((ptr, u32::from_str_radix(pc, 16).ok()?))
}

/// The address of `symbol` in an ELF image.
/// A C++ name written `a::b::f` stands for the one function of that name whatever its
/// parameters (its mangled name starts `_ZN1a1b1fE`).
pub fn symbol_address(elf: &[u8], symbol: &str) -> Result<u32> {
    let file = object::File::parse(elf).context("parsing the ELF")?;
    let mut found = file.symbols().find(|s| s.name() == Ok(symbol));
    if let (None, Some(prefix)) = (&found, mangled_prefix(symbol)) {
        let mut matches = file
            .symbols()
            .filter(|s| s.name().is_ok_and(|n| n.starts_with(&prefix)));
        found = matches.next();
        if found.is_some() && matches.next().is_some() {
            bail!("the ELF has several functions named {symbol}: give the mangled name");
        }
    }
    let found = found.ok_or_else(|| anyhow!("the ELF has no symbol {symbol}"))?;
    u32::try_from(found.address() & !1).context("a 64-bit symbol address")
}

/// The start of the Itanium-mangled name of a function `a::b::f` in namespaces or classes.
fn mangled_prefix(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split("::").collect();
    let plain =
        |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.len() < 2 || !parts.iter().all(plain) {
        return None;
    }
    let nested: String = parts.iter().map(|p| format!("{}{p}", p.len())).collect();
    Some(format!("_ZN{nested}E"))
}

/// Runs `elf` in QEMU's Cortex-M4F (mps2-an386) with the trace on, and estimates the cycles of
/// the first call of `symbol`; QEMU is stopped as soon as that call returns.
pub fn estimate_elf(elf: &Path, symbol: &str, timeout: Duration) -> Result<Estimate> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let entry = symbol_address(&bytes, symbol).with_context(|| elf.display().to_string())?;
    let code = Code::from_elf(&bytes).with_context(|| elf.display().to_string())?;
    let (reader, messages) = trace(elf, &code, Timing::Call { entry }, timeout)?;
    reader
        .finish()
        .with_context(|| format!("tracing {symbol} in {}{messages}", elf.display()))
}

/// Runs `elf` like [`estimate_elf`], and estimates the cycles of each of the first `count`
/// stretches between a call of `begin` and the next call of `end` (e.g. [`MOTE_LAYER_BEGIN`]
/// and [`MOTE_LAYER_END`], around each operator of the mote firmware's profiled invoke);
/// `usize::MAX` runs to the end.
pub fn estimate_segments(
    elf: &Path,
    (begin, end): (&str, &str),
    count: usize,
    timeout: Duration,
) -> Result<Vec<Estimate>> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let timing = Timing::Between {
        begin: symbol_address(&bytes, begin).with_context(|| elf.display().to_string())?,
        end: symbol_address(&bytes, end).with_context(|| elf.display().to_string())?,
        count,
    };
    if let Timing::Between {
        begin: b, end: e, ..
    } = timing
    {
        if b == e {
            bail!("{begin} and {end} share one address in {}", elf.display());
        }
    }
    let code = Code::from_elf(&bytes).with_context(|| elf.display().to_string())?;
    let (reader, messages) = trace(elf, &code, timing, timeout)?;
    reader
        .finish_segments()
        .with_context(|| format!("tracing {begin}..{end} in {}{messages}", elf.display()))
}

/// Runs `elf` (its `code`) in QEMU with the trace on, feeding the log to a reader for
/// `timing` until it is done or QEMU exits. Also returns QEMU's exit status and own last
/// messages, as text for errors.
fn trace<'a>(
    elf: &Path,
    code: &'a Code,
    timing: Timing,
    timeout: Duration,
) -> Result<(TraceReader<'a>, String)> {
    let mut command = crate::qemu::qemu_command(elf);
    // The log goes to the pipe, read as it comes: it never lands on disk.
    command
        .args(["-d", "in_asm,exec,nochain", "-D", "/dev/stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!(
            "{} not found: install it (Debian/Ubuntu: `sudo apt-get install qemu-system-arm`)",
            crate::qemu::QEMU
        ),
        _ => anyhow!("starting {}: {e}", crate::qemu::QEMU),
    })?;
    let stderr = child.stderr.take().context("QEMU's stderr")?;
    let child = Arc::new(Mutex::new(child));
    let watchdog = Watchdog::start(Arc::clone(&child), timeout);
    let read = read_trace(BufReader::new(stderr), TraceReader::new(code, timing));
    let timed_out = watchdog.stop();
    let status = {
        let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        child.wait()
    };
    if timed_out {
        bail!(
            "the traced run of {} did not finish within {:.0} s",
            elf.display(),
            timeout.as_secs_f64()
        );
    }
    let (reader, other_lines) = read?;
    let status = status.map(|s| s.to_string()).unwrap_or_default();
    let messages = format!(" (QEMU {status}; {})", other_lines.join(" | "));
    Ok((reader, messages))
}

/// Feeds the log to `reader` until its region is done or the log ends; also returns the last
/// few lines that were not part of the trace (QEMU's own messages), for errors.
fn read_trace<'a>(
    mut log: impl BufRead,
    mut reader: TraceReader<'a>,
) -> Result<(TraceReader<'a>, Vec<String>)> {
    let mut buf = Vec::new();
    let mut other = Vec::new();
    while !reader.done() {
        buf.clear();
        if log.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.starts_with(crate::qemu::QEMU) {
            other.push(line.to_string());
            if other.len() > 5 {
                other.remove(0);
            }
        }
        reader.line(line)?;
    }
    Ok((reader, other))
}

/// Kills a QEMU run that outlives its timeout.
struct Watchdog {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(child: Arc<Mutex<Child>>, timeout: Duration) -> Watchdog {
        let (stop, stopped) = std::sync::mpsc::channel();
        let deadline = Instant::now() + timeout;
        let thread = std::thread::spawn(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            if stopped.recv_timeout(left).is_ok() {
                return false;
            }
            let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
            true
        });
        Watchdog { stop, thread }
    }

    /// Whether it had to kill the run.
    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Halfwords laid out from 0x200.
    fn code(halfwords: &[u16]) -> Code {
        let bytes: Vec<u8> = halfwords.iter().flat_map(|h| h.to_le_bytes()).collect();
        Code::from_bytes(0x200, &bytes)
    }

    /// The cycles of a straight run of instructions, fall-through at the end.
    fn straight(halfwords: &[u16]) -> u64 {
        let code = code(halfwords);
        let mut insns = Vec::new();
        let mut addr = 0x200;
        while let Ok(insn) = code.insn(addr) {
            insns.push(insn);
            addr = insn.end();
        }
        let mut pricer = Pricer::default();
        pricer.block(&insns, Some(addr));
        pricer.estimate.cycles
    }

    // ldr r2, [r0]; adds r1, r1, r2; subs r3, #1; bne 0x200
    const LOOP: [u16; 4] = [0x6802, 0x1889, 0x3b01, 0xd1fb];

    #[test]
    fn a_loop_costs_what_the_trm_says() {
        let code = code(&LOOP);
        let insns: Vec<Insn> = [0x200, 0x202, 0x204, 0x206]
            .iter()
            .map(|&a| code.insn(a).unwrap())
            .collect();
        let mut pricer = Pricer::default();
        let n = 10;
        for i in 0..n {
            let next = if i + 1 < n { 0x200 } else { 0x208 };
            pricer.block(&insns, Some(next));
        }
        // LDR 2 + ADDS 1 + SUBS 1 + taken BNE 1 + P, and a not-taken BNE (1) to end.
        let per_iteration = 2 + 1 + 1 + 1 + u64::from(PIPELINE_REFILL);
        assert_eq!(pricer.estimate.cycles, per_iteration * n - 2);
        assert_eq!(pricer.estimate.instructions, 4 * n);
        assert_eq!(pricer.estimate.taken_branches, n - 1);
    }

    #[test]
    fn multiple_and_dual_transfers_cost_one_plus_n() {
        assert_eq!(straight(&[0xc81e]), 5, "ldm r0!, {{r1-r4}}");
        assert_eq!(straight(&[0xb5f0]), 6, "push {{r4-r7, lr}}");
        assert_eq!(straight(&[0xe9d0, 0x2300]), 3, "ldrd r2, r3, [r0]");
        assert_eq!(straight(&[0xed2d, 0x8a04]), 5, "vpush {{s16-s19}}");
        // pop {r4, pc} always refills.
        assert_eq!(straight(&[0xbd10]), 3 + u64::from(PIPELINE_REFILL));
    }

    #[test]
    fn loads_pipeline_after_a_load_unless_they_depend_on_it() {
        // ldr r1, [r0]; ldr r2, [r3]: the second pipelines.
        assert_eq!(straight(&[0x6801, 0x681a]), 3);
        // ldr r1, [r0]; ldr r2, [r1]: its address is the first one's result.
        assert_eq!(straight(&[0x6801, 0x680a]), 4);
        // ldr r1, [r0]; str r1, [r0, #4]: the store writes what was loaded, and pipelines.
        assert_eq!(straight(&[0x6801, 0x6041]), 3);
        // str r1, [r0, #4]; ldr r1, [r0]: nothing pipelines after a store.
        assert_eq!(straight(&[0x6041, 0x6801]), 4);
        // ldr r1, [r0], #4 twice: writeback loads do not pipeline.
        assert_eq!(straight(&[0xf850, 0x1b04, 0xf850, 0x1b04]), 4);
        // ldr.w r1, [r0, r2, lsl #2] after ldr r2, [r3]: the offset register was loaded.
        assert_eq!(straight(&[0x681a, 0xf850, 0x1022]), 4);
    }

    #[test]
    fn multiplies_divides_and_vfp_have_their_trm_costs() {
        assert_eq!(straight(&[0xfb11, 0x3002]), 1, "smlabb");
        assert_eq!(straight(&[0xfb21, 0x3002]), 1, "smlad");
        assert_eq!(straight(&[0xfba2, 0x0103]), 1, "umull");
        assert_eq!(straight(&[0xfb91, 0xf0f2]), u64::from(DIVIDE_CYCLES));
        assert_eq!(straight(&[0xee00, 0x0a81]), 3, "vmla.f32");
        assert_eq!(straight(&[0xee30, 0x0a81]), 1, "vadd.f32");
        assert_eq!(straight(&[0xee80, 0x0a81]), 14, "vdiv.f32");
        assert_eq!(straight(&[0xeeb1, 0x0ae0]), 14, "vsqrt.f32");
        assert_eq!(straight(&[0xed90, 0x0a00]), 2, "vldr");
        assert_eq!(straight(&[0xee10, 0x0a10]), 1, "vmov r0, s0");
        assert_eq!(straight(&[0xf3bf, 0x8f5f]), 1, "dmb");
    }

    #[test]
    fn branches_pay_the_refill_only_when_taken() {
        let refill = u64::from(PIPELINE_REFILL);
        for (branch, base) in [
            (vec![0xd1fb], 1),         // bne
            (vec![0xb108], 1),         // cbz r0
            (vec![0x4770], 1),         // bx lr
            (vec![0x46f7], 1),         // mov pc, lr
            (vec![0xf000, 0xf87e], 1), // bl
            (vec![0xe8df, 0xf000], 2), // tbb [pc, r0]
            (vec![0xf85d, 0xfb04], 2), // ldr pc, [sp], #4
        ] {
            let code = code(&branch);
            let insn = code.insn(0x200).unwrap();
            assert!(matches!(insn.kind, Kind::Branch { .. }), "{branch:x?}");
            for (next, cycles) in [(insn.end(), base), (0x400, base + refill)] {
                let mut pricer = Pricer::default();
                pricer.block(&[insn], Some(next));
                assert_eq!(pricer.estimate.cycles, cycles, "{branch:x?} to {next:#x}");
            }
        }
    }

    /// A log with a caller at 0x100 calling a loop at 0x200 (returning at 0x208).
    fn traced_call(loop_log: &str) -> Result<Estimate> {
        let mut bytes = vec![0u8; 0x200];
        // 0x100: bl 0x200; 0x104: nop
        bytes[0x100..0x106].copy_from_slice(&[0x00, 0xf0, 0x7e, 0xf8, 0x00, 0xbf]);
        for h in LOOP.iter().chain(&[0x4770]) {
            bytes.extend(h.to_le_bytes());
        }
        let code = Code::from_bytes(0, &bytes);
        let log = format!(
            "----------------\nIN: caller\n0x00000100:  f000 f87e  bl #0x200\n\n\
             Trace 0: 0x1000 [00000000/00000100/00000110/ff000000] caller\n{loop_log}\
             ----------------\nIN: f\n0x00000208:  4770       bx lr\n\n\
             Trace 0: 0x3000 [00000000/00000208/00000110/ff000000] f\n\
             ----------------\nIN: caller\n0x00000104:  bf00       nop\n\n\
             Trace 0: 0x4000 [00000000/00000104/00000110/ff000000] caller\n"
        );
        let mut reader = TraceReader::new(&code, Timing::Call { entry: 0x201 });
        for line in log.lines() {
            reader.line(line)?;
        }
        assert!(reader.done());
        reader.finish()
    }

    const LOOP_TB: &str = "----------------\nIN: f\n0x00000200:  6802  ldr r2, [r0]\n\
        0x00000202:  1889  adds r1, r1, r2\n0x00000204:  3b01  subs r3, #1\n\
        0x00000206:  d1fb  bne #0x200\n\n";
    const LOOP_EXEC: &str = "Trace 0: 0x2000 [00000000/00000200/00000110/ff000000] f\n";

    #[test]
    fn the_trace_prices_one_call_from_entry_to_return() {
        let stopped = "Stopped execution of TB chain before 0x2000 [00000200] f\n";
        let log = format!("{LOOP_TB}{LOOP_EXEC}{LOOP_EXEC}{stopped}{LOOP_EXEC}{LOOP_EXEC}");
        let estimate = traced_call(&log).unwrap();
        // Three iterations (the stopped TB never ran), then a taken bx lr.
        let refill = u64::from(PIPELINE_REFILL);
        assert_eq!(estimate.instructions, 3 * 4 + 1);
        assert_eq!(estimate.cycles, 3 * (5 + refill) - refill + 1 + refill);
    }

    #[test]
    fn a_rewound_tb_counts_only_what_ran_before_the_rewind() {
        let rest = "cpu_io_recompile: rewound execution of TB to 00000204\n\
             ----------------\nIN: f\n0x00000204:  3b01  subs r3, #1\n\
             0x00000206:  d1fb  bne #0x200\n\n\
             Trace 0: 0x2800 [00000000/00000204/00000110/ff000000] f\n";
        let estimate = traced_call(&format!("{LOOP_TB}{LOOP_EXEC}{rest}")).unwrap();
        // One iteration, its BNE not taken, then a taken bx lr.
        assert_eq!(estimate.instructions, 5);
        assert_eq!(estimate.cycles, 5 + 1 + u64::from(PIPELINE_REFILL));
    }

    #[test]
    fn an_unfinished_or_missing_region_is_an_error() {
        let code = code(&LOOP);
        let mut reader = TraceReader::new(&code, Timing::Call { entry: 0x300 });
        reader.line(LOOP_TB.lines().nth(1).unwrap()).unwrap();
        assert!(reader.finish().is_err());
        assert!(TraceReader::new(&code, Timing::Call { entry: 0x200 })
            .line("Trace 0: 0x2000 [00000000/00000200/00000110/ff000000] f")
            .is_err());
        // A listing that steps 2 bytes over a 4-byte instruction (ldrd at 0x200).
        let code = Code::from_bytes(0x200, &[0xd0, 0xe9, 0x00, 0x23, 0x00, 0xbf]);
        let mut reader = TraceReader::new(&code, Timing::Call { entry: 0x300 });
        for line in ["IN: f", "0x00000200:  e9d0", "0x00000202:  2300"] {
            reader.line(line).unwrap();
        }
        let err = reader.line("").unwrap_err().to_string();
        assert!(err.contains("is this the ELF QEMU runs?"), "{err}");
        let elf = b"not an elf";
        assert!(symbol_address(elf, MOTE_TIMED_SYMBOL).is_err());
        assert!(Code::from_elf(elf).is_err());
    }

    #[test]
    fn segments_between_markers_are_priced_without_the_markers() {
        let mut bytes = vec![0u8; 0x320];
        let mut put = |at: usize, halfwords: &[u16]| {
            for (i, h) in halfwords.iter().enumerate() {
                bytes[at + 2 * i..at + 2 * i + 2].copy_from_slice(&h.to_le_bytes());
            }
        };
        // 0x100: bl begin; 0x104: ldr r2, [r0]; adds r1, r1, r2; bl end; 0x10c: nop.
        put(
            0x100,
            &[0xf000, 0xf87e, 0x6802, 0x1889, 0xf000, 0xf87e, 0xbf00],
        );
        put(0x300, &[0x4770]); // begin: bx lr
        put(0x310, &[0x4770]); // end: bx lr
        let code = Code::from_bytes(0, &bytes);
        let tb = |ptr: u32, addrs: &[u32]| {
            let listing: String = addrs.iter().map(|a| format!("{a:#010x}:  0\n")).collect();
            format!(
                "IN: x\n{listing}\nTrace 0: {ptr:#x} [00000000/{:08x}/0/0] x\n",
                addrs[0]
            )
        };
        let exec = |ptr: u32, pc: u32| format!("Trace 0: {ptr:#x} [00000000/{pc:08x}/0/0] x\n");
        let mut log = tb(0x1000, &[0x100]) + &tb(0x2000, &[0x300]);
        log += &(tb(0x3000, &[0x104, 0x106, 0x108]) + &tb(0x4000, &[0x310]));
        log += &tb(0x5000, &[0x10c]);
        for (ptr, pc) in [(0x1000, 0x100), (0x2000, 0x300), (0x3000, 0x104)] {
            log += &exec(ptr, pc);
        }
        log += &(exec(0x4000, 0x310) + &exec(0x5000, 0x10c));
        let timing = Timing::Between {
            begin: 0x301,
            end: 0x311,
            count: usize::MAX,
        };
        let mut reader = TraceReader::new(&code, timing);
        for line in log.lines() {
            reader.line(line).unwrap();
        }
        // LDR 2, ADDS 1, the taken BL to the end marker 1 + P.
        let segment = Estimate {
            instructions: 3,
            cycles: 4 + u64::from(PIPELINE_REFILL),
            taken_branches: 1,
            single_transfers: 1,
            pipelined: 0,
        };
        assert_eq!(reader.finish_segments().unwrap(), vec![segment; 2]);
        // Asked for one stretch, the reader is done after it and ignores the rest.
        let one = Timing::Between {
            begin: 0x301,
            end: 0x311,
            count: 1,
        };
        let mut first_only = TraceReader::new(&code, one);
        for line in log.lines() {
            first_only.line(line).unwrap();
        }
        assert!(first_only.done());
        assert_eq!(first_only.finish_segments().unwrap(), vec![segment]);
    }

    #[test]
    fn a_cpp_name_stands_for_its_mangled_prefix() {
        assert_eq!(
            mangled_prefix("tflite::MicroInterpreter::Invoke").as_deref(),
            Some("_ZN6tflite16MicroInterpreter6InvokeE")
        );
        assert!(TFLM_INVOKE_SYMBOL
            .starts_with(&mangled_prefix("tflite::MicroInterpreter::Invoke").unwrap()));
        assert_eq!(mangled_prefix("main"), None);
        assert_eq!(mangled_prefix("a::operator()"), None);
    }

    #[test]
    fn milliseconds_follow_the_clock() {
        let estimate = Estimate {
            instructions: 100_000,
            cycles: 120_000,
            ..Estimate::default()
        };
        assert_eq!(estimate.millis(120.0), 1.0);
        assert_eq!(estimate.cpi(), 1.2);
    }
}
