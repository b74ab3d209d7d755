//! Picks the board's memory map, passes the linker scripts to the firmware binary only, and
//! embeds the model directory the firmware runs.
use std::{env, fs, path::Path, path::PathBuf};

use mote_core::format::OpCode;
use mote_core::model::Requirement;
use mote_core::persist::payload_capacity;
use mote_core::train::{Head, Sgd};
use mote_core::Model;

/// On-device fine-tuning hyperparameters (also emitted into the generated code).
const LEARNING_RATE: f32 = 0.05;
const MOMENTUM: f32 = 0.9;
const EPOCHS: usize = 5;
const BATCH: usize = 16;
/// RAM kept free for the stack and everything the firmware itself uses (most boards).
const RESERVED_RAM: usize = 16 * 1024;
/// An upper bound on one decoded operator's RAM on the device (`Interpreter::DECODED_SLOT`
/// there; this script runs on the host, where pointers are wider).
const DECODED_SLOT_BOUND: usize = 128;
/// Bytes of retained RAM (QEMU) or flash (board) for the two weight slots.
const STORE_SLOT: usize = 16 * 1024;
const MIB: usize = 1024 * 1024;

/// An upper bound on the firmware's own code and constants with every operator linked, so
/// that the flash check errs on the safe side. The release firmware without its model and
/// vectors, measured (`size -A`, 2026-12-07, the demo model's build less its model and vectors):
/// QEMU 152 KiB, nRF52840 155 KiB; the bound leaves room for the trainer and for growth. Should
/// the code outgrow it, the linker still reports the overflow, without figures.
const CODE_BOUND: usize = 256 * 1024;

/// A board's memories, as its memory-*.x gives them.
struct Board {
    /// Its `board-*` cargo feature, as cargo names it to build scripts.
    feature: &'static str,
    name: &'static str,
    memory: &'static str,
    /// The thumb target of its core: a build for another one faults on the first instruction
    /// the core lacks (or cannot link), so the build refuses it.
    target: &'static str,
    /// A QEMU machine: semihosting and its own short interrupt table (board/qemu.rs).
    qemu: bool,
    ram: usize,
    /// The FLASH region: code, read-only data, the test and fine-tuning vectors.
    flash: usize,
    /// Whether the model goes to FLASH too (the MPS machines' goes to a region of its own).
    model_in_flash: bool,
    /// RAM the weight slots take (retained RAM; the nRF52840 keeps them in its flash).
    store_ram: usize,
    /// RAM kept free for the stack and everything the firmware itself uses.
    reserved_ram: usize,
    /// See [`CODE_BOUND`].
    code_bound: usize,
    /// The memory region the two model slots go to (`MOTE_MODEL_SLOT_BYTES`), or `None` where
    /// the flash's erase sectors do not suit them.
    model_slots: Option<&'static str>,
}

/// A QEMU MPS machine: 4 MiB of RAM, `flash` of code memory, the model in a region of its own.
const fn mps(feature: &'static str, name: &'static str, target: &'static str) -> Board {
    Board {
        feature,
        name,
        memory: "",
        target,
        qemu: true,
        ram: 4 * MIB,
        flash: 4 * MIB,
        model_in_flash: false,
        store_ram: 2 * STORE_SLOT,
        reserved_ram: RESERVED_RAM,
        code_bound: CODE_BOUND,
        model_slots: Some("MODEL"),
    }
}

/// A board flashed through probe-rs, its model in flash.
const fn probe(feature: &'static str, name: &'static str, target: &'static str) -> Board {
    Board {
        qemu: false,
        model_in_flash: true,
        model_slots: Some("FLASH"),
        ..mps(feature, name, target)
    }
}

/// Every board, by its `board-*` feature.
fn boards() -> [Board; 9] {
    let thumbv7em = "thumbv7em-none-eabihf";
    let thumbv8m = "thumbv8m.main-none-eabihf";
    [
        Board {
            memory: "memory-qemu.x",
            ..mps("BOARD_QEMU", "QEMU mps2-an386", thumbv7em)
        },
        Board {
            memory: "memory-qemu-m3.x",
            ..mps("BOARD_QEMU_M3", "QEMU mps2-an385", "thumbv7m-none-eabi")
        },
        Board {
            memory: "memory-qemu-m7.x",
            ..mps("BOARD_QEMU_M7", "QEMU mps2-an500", thumbv7em)
        },
        Board {
            memory: "memory-qemu-m33.x",
            ..mps("BOARD_QEMU_M33", "QEMU mps2-an505", thumbv8m)
        },
        Board {
            memory: "memory-qemu-m55.x",
            // Its code memory is the SSE-300's 512 KiB ITCM.
            flash: 512 * 1024,
            ..mps("BOARD_QEMU_M55", "QEMU mps3-an547", thumbv8m)
        },
        Board {
            memory: "memory-microbit.x",
            ram: 16 * 1024,
            flash: 256 * 1024,
            model_in_flash: true,
            model_slots: Some("FLASH"),
            // Measured with the demo model (2026-12-07): 156 B of statics besides the arena
            // and decoded operators, a 1,304 B stack peak; 4 KiB leaves room.
            reserved_ram: 4 * 1024,
            // Cortex-M0 code with the operators the model uses (demo model: 35 KiB); a model
            // needing more still fails, at link time.
            code_bound: 64 * 1024,
            ..mps(
                "BOARD_MICROBIT",
                "BBC micro:bit (QEMU microbit)",
                "thumbv6m-none-eabi",
            )
        },
        Board {
            memory: "memory-nrf52840.x",
            ram: 256 * 1024,
            // 1 MiB, less the 32 KiB of weight slots at its end.
            flash: MIB - 2 * STORE_SLOT,
            store_ram: 0,
            ..probe("BOARD_NRF52840", "nRF52840", thumbv7em)
        },
        Board {
            memory: "memory-stm32f4.x",
            ram: 128 * 1024,
            flash: 512 * 1024,
            // Its flash sectors are 16 to 128 KiB: the slots would need sectors of their own.
            model_slots: None,
            ..probe("BOARD_STM32F4", "STM32F411RE", thumbv7em)
        },
        Board {
            memory: "memory-rp2040.x",
            ram: 264 * 1024,
            // 2 MiB of QSPI flash less the 256-byte second-stage bootloader.
            flash: 2 * MIB - 256,
            ..probe("BOARD_RP2040", "RP2040", "thumbv6m-none-eabi")
        },
    ]
}

fn main() {
    // Armv6-M cores (Cortex-M0/M0+) run Thumb-1 only: src/mem.rs has a variant for them.
    println!("cargo::rustc-check-cfg=cfg(mote_thumb1)");
    if env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv6m")) {
        println!("cargo::rustc-cfg=mote_thumb1");
    }
    let mut chosen = boards()
        .into_iter()
        .filter(|b| env::var_os(format!("CARGO_FEATURE_{}", b.feature)).is_some());
    let board = match (chosen.next(), chosen.next()) {
        (Some(board), None) => board,
        // main.rs reports the mistake with compile_error!; keep the build script quiet.
        _ => return,
    };
    let target = env::var("TARGET").unwrap_or_default();
    if target != board.target {
        panic!(
            "\n\nthe {} runs {}, not {target}: build with `--target {}`\n",
            board.name, board.target, board.target
        );
    }
    let memory = board.memory;
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    if board.qemu {
        // cortex-m-rt's `device` feature (the QEMU board's own short interrupt table, see
        // board/qemu.rs) includes a device.x naming the device's interrupts: it has none.
        fs::write(out.join("device.x"), "").expect("write device.x into OUT_DIR");
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    // Identical functions share one copy (e.g. __aeabi_memclr4/8): less flash; nothing in the
    // firmware compares function addresses.
    println!("cargo:rustc-link-arg-bins=--icf=all");
    // An MPS machine's model goes to its PSRAM or QSPI memory (as to a board's external QSPI
    // flash), so that models larger than the code memory run.
    let section = if board.model_in_flash {
        ""
    } else {
        "#[link_section = \".model\"]\n"
    };
    embed_model(&out, &board, section);
}

/// `CLASS_NAMES`, from the export's `class_names.txt` (one per line; none if absent).
fn class_names(file: Option<Vec<u8>>) -> String {
    let text = String::from_utf8_lossy(&file.unwrap_or_default()).into_owned();
    let names: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l:?}"))
        .collect();
    format!(
        "/// The classes' names, in output order (empty: the model directory has none).\n\
         pub const CLASS_NAMES: &[&str] = &[{}];\n",
        names.join(", ")
    )
}

/// Compile-time checks that this build of mote-core has every operator and kernel path the
/// model needs: a build that left one out fails here, naming the feature, instead of at the
/// model's first parse on the device. (The firmware crate cannot see mote-core's features from
/// its build script, so the check is a constant evaluated where both are known.)
fn required_features(model: &Model<'_>, finetune: bool) -> String {
    // Fine-tuning dequantizes the backbone's features with DEQUANTIZE's kernel.
    let finetuning = finetune.then_some(Requirement::Operator(OpCode::Dequantize));
    model
        .requirements()
        .expect("parsed")
        .chain(finetuning)
        .map(|r| format!("{r}\n"))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    println!("cargo:rerun-if-changed={}", path.display());
    fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The model directory: `MOTE_MODEL_DIR` (absolute, or relative to the workspace root), else
/// `models/demo`. It holds `model.mote` and
/// `test_inputs.i8`, optionally `test_labels.u8`, and optionally a fine-tuning set:
/// `finetune_inputs.i8`, `finetune_labels.u8`, `finetune_test_inputs.i8`,
/// `finetune_test_labels.u8`.
fn embed_model(out: &Path, board: &Board, section: &str) {
    println!("cargo:rerun-if-env-changed=MOTE_MODEL_DIR");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // Cargo runs this script in firmware/; a relative directory means one relative to the
    // workspace root, where `cargo build` is run.
    let dir = env::var_os("MOTE_MODEL_DIR")
        .map(|d| manifest.join("..").join(d))
        .unwrap_or_else(|| manifest.join("models/demo"));
    let model_path = dir.join("model.mote");
    let bytes = read(&model_path);
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u32::from_le_bytes(b);
    }
    let aligned: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let model = Model::parse(&aligned[..bytes.len()])
        .unwrap_or_else(|e| panic!("{} is not a valid model: {e}", model_path.display()));
    let room = room(board, &model);
    write_slot_script(out, board, &room);
    let arena = room.arena;

    let optional = |name: &str| {
        let p = dir.join(name);
        println!("cargo:rerun-if-changed={}", p.display());
        p.exists().then(|| read(&p))
    };
    let finetune = optional("finetune_inputs.i8").is_some();
    let sgd = Sgd::new(LEARNING_RATE).with_momentum(MOMENTUM);
    let (head_params, head_inputs, head_outputs, train_bytes) = if finetune {
        let head = Head::find(&model, sgd)
            .unwrap_or_else(|e| panic!("{}: no head to fine-tune: {e}", model_path.display()));
        (
            head.param_count(),
            head.inputs,
            head.outputs,
            head.plan.bytes(),
        )
    } else {
        (0, 0, 0, 0)
    };
    let head = HeadFigures {
        params: head_params,
        outputs: head_outputs,
        inputs: head_inputs,
        train_bytes,
    };
    check_memory(&dir, board, &model, bytes.len(), &head, &room);

    let mut code = format!(
        "/// The model's bytes.\n\
         {section}pub static MODEL: Aligned<[u8; {len}]> = Aligned(*include_bytes!({model_path:?}));\n\
         /// Arena bytes the model needs (planned offline by mote-host).\n\
         pub const ARENA_SIZE: usize = {arena};\n\
         /// Operators the firmware decodes (each once, at start-up): its model's, or more.\n\
         pub const OP_COUNT: usize = {op_count};\n\
         /// Bytes of each of the two model slots (0: none, the built-in model always runs).\n\
         pub const MODEL_SLOT_BYTES: usize = {slot_bytes};\n\
         /// The RAM budget's bound on one decoded operator's bytes.\n\
         pub const DECODED_SLOT_BOUND: usize = {DECODED_SLOT_BOUND};\n\
         /// f32 parameters of the head fine-tuned on the device (0: no fine-tuning set).\n\
         pub const HEAD_PARAMS: usize = {head_params};\n\
         /// Input features of that head (0: no fine-tuning set).\n\
         pub const HEAD_INPUTS: usize = {head_inputs};\n\
         /// Whether the directory has a fine-tuning set.\n\
         pub const FINETUNE: bool = {finetune};\n\
         /// Bytes of training memory for the head.\n\
         pub const TRAIN_BYTES: usize = {train_bytes};\n\
         /// Bytes of each of the two weight slots.\n\
         pub const STORE_SLOT: usize = {slot};\n\
         /// Fine-tuning: learning rate, momentum, epochs, batch size.\n\
         pub const LEARNING_RATE: f32 = {LEARNING_RATE:?};\n\
         pub const MOMENTUM: f32 = {MOMENTUM:?};\n\
         pub const EPOCHS: usize = {EPOCHS};\n\
         pub const BATCH: usize = {BATCH};\n",
        len = bytes.len(),
        slot = STORE_SLOT,
        op_count = room.operators,
        slot_bytes = room.slot_bytes,
    );
    code += &required_features(&model, finetune);
    code += &class_names(optional("class_names.txt"));
    for name in [
        "test_inputs.i8",
        "test_labels.u8",
        "finetune_inputs.i8",
        "finetune_labels.u8",
        "finetune_test_inputs.i8",
        "finetune_test_labels.u8",
    ] {
        let ident = name
            .replace('.', "_")
            .to_uppercase()
            .replace("_I8", "")
            .replace("_U8", "");
        let path = dir.join(name);
        let data = optional(name).unwrap_or_default();
        if name == "test_inputs.i8" && data.is_empty() {
            panic!(
                "{} is missing: the firmware needs input vectors to run",
                path.display()
            );
        }
        if data.is_empty() {
            code += &format!("pub static {ident}: [u8; 0] = [];\n");
        } else {
            code += &format!(
                "pub static {ident}: [u8; {}] = *include_bytes!({path:?});\n",
                data.len()
            );
        }
    }
    fs::write(out.join("model.rs"), code).expect("write model.rs");
}

/// What the firmware keeps room for beyond its built-in model, so that a model written into
/// its slots later (`mote deploy --model-only`) can run.
struct Room {
    /// Bytes of each model slot (`MOTE_MODEL_SLOT_BYTES`; 0: no slots).
    slot_bytes: usize,
    /// Arena bytes: the model's, or `MOTE_ARENA_BYTES` if larger.
    arena: usize,
    /// Operators decoded: the model's, or `MOTE_MAX_OPERATORS` if more.
    operators: usize,
}

/// Erase-aligned slots on every board that has them (nRF52840, RP2040: 4 KiB pages or sectors;
/// nRF51: 1 KiB).
const SLOT_ALIGN: usize = 4096;

/// A byte count from the environment (0 when unset).
fn env_count(name: &str) -> usize {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Err(_) => 0,
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("\n\n{name}={text:?} is not a whole number (bytes or operators)\n")
        }),
    }
}

fn room(board: &Board, model: &Model<'_>) -> Room {
    let slot_bytes = env_count("MOTE_MODEL_SLOT_BYTES");
    if slot_bytes > 0 {
        if board.model_slots.is_none() {
            panic!(
                "\n\nMOTE_MODEL_SLOT_BYTES: the {} has no model slots (its flash sectors are too \
                 large to give each slot its own); build without it\n",
                board.name
            );
        }
        if slot_bytes % SLOT_ALIGN != 0 {
            panic!(
                "\n\nMOTE_MODEL_SLOT_BYTES={slot_bytes} is not a multiple of {SLOT_ALIGN} \
                 (each slot must be whole flash pages)\n"
            );
        }
    }
    Room {
        slot_bytes,
        arena: model.arena_size().max(env_count("MOTE_ARENA_BYTES")),
        operators: usize::from(model.op_count()).max(env_count("MOTE_MAX_OPERATORS")),
    }
}

/// `model-slots.x`: the two model slots, erased (0xFF), in the board's region, at the symbol
/// `__mote_model_slots` (0 when there are none). A linker-script region, not a Rust static, so
/// that the compiler cannot assume what the bytes hold: the host rewrites them.
fn write_slot_script(out: &Path, board: &Board, room: &Room) {
    let script = match (room.slot_bytes, board.model_slots) {
        (0, _) | (_, None) => "PROVIDE(__mote_model_slots = 0);\n".to_string(),
        (slot, Some(region)) => format!(
            "SECTIONS\n{{\n  .mote_model_slots : ALIGN({SLOT_ALIGN})\n  {{\n    \
             __mote_model_slots = .;\n    FILL(0xFFFFFFFF);\n    . += {} - 1;\n    BYTE(0xFF);\n  \
             }} > {region}\n}} INSERT AFTER .rodata;\n",
            2 * slot
        ),
    };
    fs::write(out.join("model-slots.x"), script).expect("write model-slots.x");
    println!("cargo:rustc-link-arg-bins=-Tmodel-slots.x");
}

/// What the fine-tuned head takes (all zero without a fine-tuning set).
struct HeadFigures {
    /// f32 parameters.
    params: usize,
    /// Classes.
    outputs: usize,
    /// Input features.
    inputs: usize,
    /// Training memory.
    train_bytes: usize,
}

/// Bytes of `name` in the model directory (0 if absent).
fn file_len(dir: &Path, name: &str) -> usize {
    fs::metadata(dir.join(name)).map_or(0, |m| m.len() as usize)
}

/// Fails the build, with figures, if the model, its vectors or its head do not fit what the
/// firmware gives them: RAM, flash, the weight slot, and the test vectors' shape. Each would
/// otherwise fail later: at link time without figures, or on the device.
fn check_memory(
    path: &Path,
    board: &Board,
    model: &Model<'_>,
    model_len: usize,
    head: &HeadFigures,
    room: &Room,
) {
    let dir = path.display();
    let name = board.name;

    // The weight slot: fine-tuning would run and only its save would fail.
    let weights = 4 * head.params;
    let capacity = payload_capacity(STORE_SLOT);
    if weights > capacity {
        panic!(
            "\n\nthe head of the model in {dir} does not fit its weight slot: {} x {} inputs \
             + {} biases = {} f32 parameters = {weights} B, but a {STORE_SLOT} B slot holds \
             {capacity} B of weights (and a {} B header); use a smaller head\n",
            head.params / (head.inputs + 1).max(1),
            head.inputs,
            head.params / (head.inputs + 1).max(1),
            head.params,
            STORE_SLOT - capacity,
        );
    }

    // RAM: the arena, the decoded operators, the head's training memory, its weights (as f32
    // and as the bytes saved), its input features, the weight slots where RAM holds them.
    let arena = room.arena;
    let decoded = room.operators * DECODED_SLOT_BOUND;
    let features = 4 * head.inputs;
    let train = head.train_bytes;
    let store = if head.params > 0 { board.store_ram } else { 0 };
    let reserved = board.reserved_ram;
    let needed = arena + decoded + train + 2 * weights + features + store + reserved;
    if needed > board.ram {
        panic!(
            "\n\nthe model in {dir} does not fit the {name}'s {} KiB of RAM: it needs {arena} B \
             of arena + {decoded} B of decoded operators + {train} B of training memory + {} B \
             of head weights + {features} B of head features + {store} B of weight slots + \
             {reserved} B reserved for the stack and the firmware = {needed} B\n",
            board.ram / 1024,
            2 * weights,
        );
    }

    // Flash: the model (unless the board keeps it elsewhere), the vectors, and the code.
    let vectors: usize = [
        "test_inputs.i8",
        "test_labels.u8",
        "finetune_inputs.i8",
        "finetune_labels.u8",
        "finetune_test_inputs.i8",
        "finetune_test_labels.u8",
    ]
    .iter()
    .map(|f| file_len(path, f))
    .sum();
    let in_flash = if board.model_in_flash { model_len } else { 0 };
    let slots = match board.model_slots {
        Some("FLASH") => 2 * room.slot_bytes,
        _ => 0,
    };
    let code = board.code_bound;
    let flash = in_flash + slots + vectors + code;
    if flash > board.flash {
        let slot_text = match slots {
            0 => String::new(),
            bytes => format!("{bytes} B of model slots + "),
        };
        panic!(
            "\n\nthe model in {dir} does not fit the {name}'s {} KiB of flash: it needs \
             {in_flash} B of model + {slot_text}{vectors} B of test and fine-tuning vectors + \
             {code} B of code (an upper bound) = {flash} B\n",
            board.flash / 1024,
        );
    }

    // The vectors: whole input vectors, one label each, labels within the outputs.
    let vector: usize = (0..model.input_count())
        .map(|i| model.input(i).map_or(0, |t| t.record.byte_len as usize))
        .sum();
    let check_set = |inputs: &str, labels: &str, labelled: bool| {
        let (x, y) = (file_len(path, inputs), file_len(path, labels));
        if vector == 0 || x % vector != 0 {
            panic!(
                "\n\n{dir}/{inputs} holds {x} B, not a whole number of the model's {vector}-byte \
                 input vectors\n"
            );
        }
        if (y != 0 || labelled) && y != x / vector {
            panic!(
                "\n\n{dir}/{labels} holds {y} labels for {} vectors in {inputs}\n",
                x / vector
            );
        }
        // A class the head does not have fails the device's training step.
        if labelled {
            let classes = fs::read(path.join(labels)).unwrap_or_default();
            if let Some(&bad) = classes.iter().find(|&&c| usize::from(c) >= head.outputs) {
                panic!(
                    "\n\n{dir}/{labels} has label {bad}, but the head has {} outputs\n",
                    head.outputs
                );
            }
        }
    };
    check_set("test_inputs.i8", "test_labels.u8", false);
    if head.params > 0 {
        // Fine-tuning needs labelled samples, at least one.
        if file_len(path, "finetune_inputs.i8") == 0 {
            panic!("\n\n{dir}/finetune_inputs.i8 is empty: fine-tuning needs samples\n");
        }
        check_set("finetune_inputs.i8", "finetune_labels.u8", true);
        check_set("finetune_test_inputs.i8", "finetune_test_labels.u8", true);
    }
}
