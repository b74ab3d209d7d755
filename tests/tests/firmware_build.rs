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

/// A one-layer int8 model: `inputs` features -> FULLY_CONNECTED -> `outputs` logits, whose
/// layer is the head the device fine-tunes.
fn dense_model(inputs: usize, outputs: usize) -> Vec<u8> {
    use mote_core::format::{DType, OpCode};
    use mote_core::ops::Activation;
    use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TfOptions};
    let mut rng = mote_tests::synth::Rng::new(23);
    let mut b = ModelBuilder::new();
    let tensor = |b: &mut ModelBuilder, shape: Vec<usize>, dtype, quant, data| {
        b.tensor(TensorDef {
            name: format!("t{}", b.tensors().len()),
            shape,
            dtype,
            quant,
            data,
        })
    };
    let x = tensor(
        &mut b,
        vec![1, inputs],
        DType::I8,
        Some(Quantization::per_tensor(0.05, 0)),
        None,
    );
    let weights = (0..inputs * outputs)
        .map(|_| rng.int(-60, 60) as i8)
        .collect();
    let w = tensor(
        &mut b,
        vec![outputs, inputs],
        DType::I8,
        Some(Quantization::per_tensor(0.01, 0)),
        Some(Data::I8(weights)),
    );
    let bias = tensor(
        &mut b,
        vec![outputs],
        DType::I32,
        None,
        Some(Data::I32(vec![0; outputs])),
    );
    let y = tensor(
        &mut b,
        vec![1, outputs],
        DType::I8,
        Some(Quantization::per_tensor(0.2, 0)),
        None,
    );
    b.op(OpDef::new(
        OpCode::FullyConnected,
        &[x, w, bias],
        y,
        TfOptions::fused(Activation::None),
    ));
    b.inputs(&[x]);
    b.outputs(&[y]);
    b.build().unwrap().bytes
}

/// A model directory with `model` and, for its `inputs`-feature input, a few test vectors and
/// a small fine-tuning set with labels below `classes`.
fn model_dir(tag: &str, model: &[u8], inputs: usize, classes: u8) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vectors = |n: usize| -> Vec<u8> { (0..n * inputs).map(|i| (i * 7 % 251) as u8).collect() };
    std::fs::write(dir.join("model.mote"), model).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), vectors(2)).unwrap();
    std::fs::write(dir.join("finetune_inputs.i8"), vectors(8)).unwrap();
    let labels: Vec<u8> = (0..8).map(|i| i % classes).collect();
    std::fs::write(dir.join("finetune_labels.u8"), &labels).unwrap();
    std::fs::write(dir.join("finetune_test_inputs.i8"), vectors(4)).unwrap();
    std::fs::write(dir.join("finetune_test_labels.u8"), &labels[..4]).unwrap();
    dir
}

/// A head whose weights exceed the 16 KiB weight slot used to build, train on the device and
/// fail only when saving: the build now fails, with the figures.
#[test]
fn a_head_too_big_for_its_weight_slot_fails_the_build_with_figures() {
    // 1,100 x 4 + 4 = 4,404 f32 = 17,616 B, more than a slot's 16,352 B.
    let dir = model_dir("big-head", &dense_model(1100, 4), 1100, 4);
    let stderr = failed_build("qemu", &dir);
    assert!(
        stderr.contains("does not fit its weight slot")
            && stderr.contains("4 x 1100 inputs + 4 biases = 4404 f32 parameters = 17616 B")
            && stderr.contains("a 16384 B slot holds 16352 B of weights"),
        "{stderr}"
    );
}

/// Flash overflow was a raw linker error ("will not fit in region FLASH"); it is now reported
/// like RAM, with what takes the flash.
#[test]
fn vectors_too_big_for_the_nrf52840_flash_fail_the_build_with_figures() {
    let (blob, input, _) = mote_tests::lowering::demo_model();
    let dir = std::env::temp_dir().join(format!("mote-big-flash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &blob).unwrap();
    // About 900 KB of test vectors: with the code, more than the 992 KiB of flash.
    let copies = 900_000 / input.len() + 1;
    let vectors = input.repeat(copies);
    std::fs::write(dir.join("test_inputs.i8"), &vectors).unwrap();
    let stderr = failed_build("nrf52840", &dir);
    assert!(
        stderr.contains("does not fit the nRF52840's 992 KiB of flash")
            && stderr.contains(&format!(
                "{} B of model + {} B of test and fine-tuning vectors",
                blob.len(),
                vectors.len()
            )),
        "{stderr}"
    );
}

/// Test vectors that are not a whole number of the model's input vectors failed at run time
/// on the device; the build now says so.
#[test]
fn test_vectors_of_the_wrong_length_fail_the_build() {
    let (blob, input, _) = mote_tests::lowering::demo_model();
    let dir = std::env::temp_dir().join(format!("mote-ragged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &blob).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), &input[..input.len() - 1]).unwrap();
    let stderr = failed_build("qemu", &dir);
    assert!(
        stderr.contains(&format!("test_inputs.i8 holds {} B", input.len() - 1))
            && stderr.contains("not a whole number of the model's"),
        "{stderr}"
    );
}

/// A head with more than 1,024 inputs built and then failed on the device (its features went
/// to a fixed 1,024-float buffer). The buffer is now sized from the model (and counted in the
/// RAM check): such a head fine-tunes, saves, and is restored after the reboot.
#[test]
fn a_head_with_more_than_1024_inputs_fine_tunes_on_the_device() {
    if !mote_host::qemu::qemu_available() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let dir = model_dir("wide-head", &dense_model(1100, 2), 1100, 2);
    let guard = build_lock();
    let elf = mote_host::firmware::build(
        mote_host::firmware::Board::Qemu,
        &[("MOTE_MODEL_DIR", dir.to_str().unwrap())],
    )
    .unwrap();
    let copy = dir.join("firmware.elf");
    std::fs::copy(&elf, &copy).unwrap();
    drop(guard);
    let run = mote_host::qemu::run_elf(&copy, std::time::Duration::from_secs(120), |_| {}).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let texts: Vec<&str> = run.log.iter().map(|l| l.text.as_str()).collect();
    assert!(run.success(), "exit {}: {texts:#?}", run.exit_code);
    assert!(
        texts.contains(&"saved head slot=0 sequence=1"),
        "{texts:#?}"
    );
    // 1,100 x 2 + 2 parameters.
    assert!(
        texts.contains(&"restored head slot=0 sequence=1 bytes=8808"),
        "{texts:#?}"
    );
}

/// A fine-tuning label the head has no output for failed the device's training step; the
/// build now names it.
#[test]
fn a_fine_tuning_label_beyond_the_heads_outputs_fails_the_build() {
    let dir = model_dir("bad-label", &dense_model(20, 3), 20, 3);
    std::fs::write(dir.join("finetune_labels.u8"), [0u8, 1, 2, 3, 0, 1, 2, 0]).unwrap();
    let stderr = failed_build("qemu", &dir);
    assert!(
        stderr.contains("finetune_labels.u8 has label 3, but the head has 3 outputs"),
        "{stderr}"
    );
}

/// Builds the firmware with `features` around the model directory `dir`, which it then
/// removes: the build's messages, after checking that it failed.
fn failed_build(features: &str, dir: &std::path::Path) -> String {
    let _guard = build_lock();
    let output = cargo_build_firmware(features)
        .env("MOTE_MODEL_DIR", dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(!output.status.success(), "the build succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Model slots that do not fit the board, are not whole pages, or are asked of a board
/// without them: the build fails naming the setting.
#[test]
fn model_slot_settings_the_board_cannot_take_fail_the_build() {
    let (blob, input, _) = mote_tests::lowering::demo_model();
    let cases = [
        ("nrf52840", "524288", "B of model slots + "),
        (
            "nrf52840",
            "5000",
            "MOTE_MODEL_SLOT_BYTES=5000 is not a multiple of 4096",
        ),
        ("stm32f4", "16384", "the STM32F411RE has no model slots"),
        (
            "nrf52840",
            "lots",
            "MOTE_MODEL_SLOT_BYTES=\"lots\" is not a whole number",
        ),
    ];
    for (i, (board, slot_bytes, said)) in cases.into_iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("mote-slots-{}-{i}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.mote"), &blob).unwrap();
        std::fs::write(dir.join("test_inputs.i8"), &input).unwrap();
        let _guard = build_lock();
        let output = cargo_build_firmware(board)
            .env("MOTE_MODEL_DIR", &dir)
            .env("MOTE_MODEL_SLOT_BYTES", slot_bytes)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{board} {slot_bytes}: built");
        assert!(stderr.contains(said), "{board} {slot_bytes}: {stderr}");
    }
}
