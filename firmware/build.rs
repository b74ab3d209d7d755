//! Picks the board's memory map, passes the linker scripts to the firmware binary only, and
//! embeds the model directory the firmware runs.
use std::{env, fs, path::Path, path::PathBuf};

use mote_core::format::OpCode;
use mote_core::model::Requirement;
use mote_core::train::{Head, Sgd};
use mote_core::Model;

/// On-device fine-tuning hyperparameters (also emitted into the generated code).
const LEARNING_RATE: f32 = 0.05;
const MOMENTUM: f32 = 0.9;
const EPOCHS: usize = 5;
const BATCH: usize = 16;
/// RAM kept free for the stack and everything the firmware itself uses.
const RESERVED_RAM: usize = 16 * 1024;
/// An upper bound on one decoded operator's RAM on the device (`Interpreter::DECODED_SLOT`
/// there; this script runs on the host, where pointers are wider).
const DECODED_SLOT_BOUND: usize = 128;
/// Bytes of retained RAM (QEMU) or flash (board) for the two weight slots.
const STORE_SLOT: usize = 16 * 1024;

fn main() {
    let qemu = env::var_os("CARGO_FEATURE_BOARD_QEMU").is_some();
    let nrf = env::var_os("CARGO_FEATURE_BOARD_NRF52840").is_some();
    let (memory, ram, board) = match (qemu, nrf) {
        (true, false) => ("memory-qemu.x", 4 * 1024 * 1024, "QEMU mps2-an386"),
        (false, true) => ("memory-nrf52840.x", 256 * 1024, "nRF52840"),
        // main.rs reports the mistake with compile_error!; keep the build script quiet.
        _ => return,
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    if qemu {
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
    // QEMU's model goes to the board's 16 MiB PSRAM (as to a board's external QSPI flash), so
    // that models larger than the 4 MiB code memory run.
    let section = if qemu {
        "#[link_section = \".model\"]\n"
    } else {
        ""
    };
    embed_model(&out, ram, board, section);
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
fn embed_model(out: &Path, ram: usize, board: &str, section: &str) {
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
    let arena = model.arena_size();

    let optional = |name: &str| {
        let p = dir.join(name);
        println!("cargo:rerun-if-changed={}", p.display());
        p.exists().then(|| read(&p))
    };
    let finetune = optional("finetune_inputs.i8").is_some();
    let sgd = Sgd::new(LEARNING_RATE).with_momentum(MOMENTUM);
    let (head_params, train_bytes) = if finetune {
        let head = Head::find(&model, sgd)
            .unwrap_or_else(|e| panic!("{}: no head to fine-tune: {e}", model_path.display()));
        (head.param_count(), head.plan.bytes())
    } else {
        (0, 0)
    };
    let decoded = usize::from(model.op_count()) * DECODED_SLOT_BOUND;
    let needed = arena + decoded + train_bytes + 4 * head_params + RESERVED_RAM;
    if needed > ram {
        panic!(
            "\n\nthe model in {} does not fit the {board}'s {} KiB of RAM: it needs {arena} B of \
             arena + {decoded} B of decoded operators + {train_bytes} B of training memory + {} B \
             of head weights + {RESERVED_RAM} B reserved for the stack = {needed} B\n",
            dir.display(),
            ram / 1024,
            4 * head_params
        );
    }

    let mut code = format!(
        "/// The model's bytes.\n\
         {section}pub static MODEL: Aligned<[u8; {len}]> = Aligned(*include_bytes!({model_path:?}));\n\
         /// Arena bytes the model needs (planned offline by mote-host).\n\
         pub const ARENA_SIZE: usize = {arena};\n\
         /// The model's operators (each decoded once, at start-up).\n\
         pub const OP_COUNT: usize = {op_count};\n\
         /// The RAM budget's bound on one decoded operator's bytes.\n\
         pub const DECODED_SLOT_BOUND: usize = {DECODED_SLOT_BOUND};\n\
         /// f32 parameters of the head fine-tuned on the device (0: no fine-tuning set).\n\
         pub const HEAD_PARAMS: usize = {head_params};\n\
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
        op_count = model.op_count(),
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
