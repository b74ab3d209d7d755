//! Building the firmware around a model that cannot fit the board fails early, with a message
//! that says why and by how much.

use mote_host::firmware::cargo_build as cargo_build_firmware;
use object::{Object, ObjectSymbol};
use std::sync::Mutex;

/// The tests build into one target directory: one build (and the read of its ELF) at a time.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn build_lock() -> std::sync::MutexGuard<'static, ()> {
    BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_model_too_big_for_the_nrf52840_fails_the_build_with_a_clear_message() {
    // 100x100x16 activations, two of them live at once: ~320 KB of arena, more than 256 KiB.
    let built = mote_tests::synth::ds_cnn(3, 200, 200, 16, 1, 4)
        .build()
        .unwrap();
    assert!(built.arena_size > 256 * 1024);
    let dir = std::env::temp_dir().join(format!("mote-too-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &built.bytes).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), vec![0u8; 200 * 200]).unwrap();
    let _guard = build_lock();
    let output = cargo_build_firmware("nrf52840")
        .env("MOTE_MODEL_DIR", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("does not fit the nRF52840's 256 KiB of RAM")
            && stderr.contains(&format!("{} B of arena", built.arena_size)),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model directory given relative to where `mote` runs (here the tests crate's directory,
/// which is neither firmware/ nor the workspace root) is the one the firmware embeds.
#[test]
fn a_relative_model_directory_is_found() {
    let relative = format!("target/mote-relative-model-{}", std::process::id());
    let dir = std::env::current_dir().unwrap().join(&relative);
    std::fs::create_dir_all(&dir).unwrap();
    let (blob, input, _) = mote_tests::lowering::demo_model();
    std::fs::write(dir.join("model.mote"), &blob).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), &input).unwrap();
    let _guard = build_lock();
    let built = mote_host::firmware::build(
        mote_host::firmware::Board::Qemu,
        &[("MOTE_MODEL_DIR", relative.as_str())],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let elf = built.unwrap();
    let flash = mote_host::report::flash_use(&elf).unwrap();
    assert_eq!(flash.model, blob.len());
}

/// Firmware built without one of its model's operators does not build: the error names the
/// operator and the feature to add, before anything reaches a board.
#[test]
fn an_operator_left_out_of_the_build_fails_the_build() {
    // The demo model also has DEPTHWISE_CONV_2D, pooling, FULLY_CONNECTED and SOFTMAX.
    // No model directory: the firmware embeds the demo model.
    let _guard = build_lock();
    let output = cargo_build_firmware("board-qemu,mote-core/op-conv2d")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "the model uses DEPTHWISE_CONV_2D: enable mote-core's cargo feature op-depthwise"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("the model uses CONV_2D:"), "{stderr}");
}

/// Keyword spotting's firmware (its operators and paths only) has no panic path at all: no
/// bounds check, division or slice split in the kernels, parser or harness can panic, so
/// neither the panic machinery nor the number formatting it pulls in takes flash.
#[test]
fn keyword_spotting_firmware_links_no_panic_path() {
    let tflite =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf/kws_ref_model.tflite");
    let built = mote_host::tflite::import_tflite(&std::fs::read(tflite).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("mote-kws-no-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &built.bytes).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), vec![0u8; 49 * 10]).unwrap();
    let guard = build_lock();
    let elf = mote_host::firmware::build(
        mote_host::firmware::Board::Qemu,
        &[("MOTE_MODEL_DIR", dir.to_str().unwrap())],
    );
    let image = std::fs::read(elf.unwrap()).unwrap();
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
    let elf = object::File::parse(&*image).unwrap();
    let panicky: Vec<&str> = elf
        .symbols()
        .filter_map(|s| s.name().ok())
        .filter(|n| {
            n.contains("panicking") || n.contains("rust_begin_unwind") || n.contains("3fmt")
        })
        .collect();
    assert!(panicky.is_empty(), "{panicky:?}");
    // The memory routines are the firmware's short loops (firmware/src/mem.rs), not
    // compiler-builtins' unrolled ones.
    let builtins: Vec<&str> = elf
        .symbols()
        .filter_map(|s| s.name().ok())
        .filter(|n| n.contains("compiler_builtins") && n.contains("mem"))
        .collect();
    assert!(builtins.is_empty(), "{builtins:?}");
    // The check sees symbols at all: the kernels' are there.
    assert!(elf
        .symbols()
        .any(|s| s.name().is_ok_and(|n| n.contains("conv_gemm"))));
}
