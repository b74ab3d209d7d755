//! `mote demo`: the whole story on a fresh clone: train the digits DS-CNN, quantize, export,
//! run it on the emulated board, fine-tune it there on a new sensor, reboot, and show the
//! learned weights survived.

use anyhow::{Context, Result};
use mote_host::firmware::{self, Board};
use mote_host::quantize::RangeMethod;
use std::path::Path;
use std::time::Duration;

/// The new sensor the device adapts to: lower gain, higher offset.
pub const SHIFT: (f32, f32) = (0.6, 0.25);

fn field<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

/// Runs the demo, writing everything under `out`.
pub fn run(out: &Path, epochs: Option<usize>) -> Result<()> {
    let root = firmware::workspace_root();
    let spec = root.join("examples/digits_dscnn.toml");
    println!("== 1/4 train the digits depthwise-separable CNN (f32, on this computer)");
    let (net, _) = super::train::train(
        &spec,
        "digits",
        None,
        &out.join("train"),
        epochs,
        &Default::default(),
    )?;
    drop(net);
    println!("\n== 2/4 quantize to int8 and export");
    let dir = out.join("model");
    let report = super::train::export(
        &out.join("train/model.ckpt"),
        &dir,
        200,
        RangeMethod::MinMax,
        Some(super::train::FinetuneSource::Shift(SHIFT.0, SHIFT.1)),
        &Default::default(),
    )?;

    println!("\n== 3/4 build the firmware and run it on the emulated Cortex-M4 (QEMU mps2-an386)");
    if !mote_host::qemu::qemu_available() {
        println!(
            "qemu-system-arm is not installed (Debian/Ubuntu: `sudo apt-get install qemu-system-arm`).\n\
             Running the device path on this computer instead: the same int8 interpreter and trainer."
        );
        return host_fallback(&dir, report);
    }
    let elf = firmware::build(
        Board::Qemu,
        &[("MOTE_MODEL_DIR", dir.to_str().context("path is not UTF-8")?)],
    )?;
    let mut lines = Vec::new();
    let run = mote_host::qemu::run_elf(&elf, Duration::from_secs(600), |line| {
        if !line.text.starts_with("output ") && !line.text.starts_with("invoke ") {
            println!("  device | {line}");
        }
        lines.push(line.text.clone());
    })?;
    anyhow::ensure!(
        run.success(),
        "the firmware failed (exit {})",
        run.exit_code
    );

    println!("\n== 4/4 summary");
    println!(
        "  host:   f32 {:.2}%, int8 {:.2}% on the 359 held-out digits",
        100.0 * report.float.accuracy,
        100.0 * report.int8.accuracy
    );
    for (label, prefix) in [
        ("device: int8 test accuracy", "accuracy test "),
        (
            "device: new sensor, before fine-tuning",
            "accuracy new-sensor-before ",
        ),
        (
            "device: new sensor, after fine-tuning",
            "accuracy new-sensor-after ",
        ),
        (
            "device: after a reboot, restored weights",
            "accuracy restored ",
        ),
        ("device: fine-tuning", "finetune "),
        ("device: one inference", "invoke 0 "),
        ("device: stack peak", "stack peak "),
    ] {
        if let Some(v) = field(&lines, prefix) {
            println!("  {label}: {v}");
        }
    }
    println!(
        "  files: {}/train (checkpoint, curves), {}/model (model.mote, model.rs)",
        out.display(),
        out.display()
    );
    Ok(())
}

/// Without QEMU: fine-tune the exported head on the host through the same core code.
fn host_fallback(dir: &Path, report: mote_host::workflow::ExportReport) -> Result<()> {
    use mote_core::train::{Head, Sgd, Target, Trainer};
    let blob = std::fs::read(dir.join("model.mote"))?;
    let aligned = mote_host::AlignedBytes::new(&blob);
    let model = mote_core::Model::parse(aligned.as_slice()).map_err(anyhow::Error::msg)?;
    let mut arena = mote_host::arena_for(&model)?;
    let arena = arena.as_mut_slice();
    let mut interp = mote_core::Interpreter::new(model, arena).map_err(anyhow::Error::msg)?;
    let head = Head::find(&model, Sgd::new(0.05).with_momentum(0.9)).map_err(anyhow::Error::msg)?;
    let mut params = vec![0.0f32; head.param_count()];
    head.init_params(&model, &mut params)
        .map_err(anyhow::Error::msg)?;
    let read = |name: &str| std::fs::read(dir.join(name));
    let (tx, ty, vx, vy) = (
        read("finetune_inputs.i8")?,
        read("finetune_labels.u8")?,
        read("finetune_test_inputs.i8")?,
        read("finetune_test_labels.u8")?,
    );
    let len = tx.len() / ty.len().max(1);
    let mut features = vec![0.0f32; head.inputs];
    let mut accuracy = |interp: &mut mote_core::Interpreter, params: &[f32]| -> Result<f64> {
        let mut hits = 0;
        for (x, &y) in vx.chunks_exact(len).zip(&vy) {
            for (d, &s) in interp
                .input_i8(0)
                .map_err(anyhow::Error::msg)?
                .iter_mut()
                .zip(x)
            {
                *d = s as i8;
            }
            head.features(interp, &mut (), &mut features)
                .map_err(anyhow::Error::msg)?;
            hits += usize::from(
                head.predict(params, &features)
                    .map_err(anyhow::Error::msg)?
                    == y as usize,
            );
        }
        Ok(hits as f64 / vy.len() as f64)
    };
    let before = accuracy(&mut interp, &params)?;
    let mut train_arena = mote_host::AlignedBytes::zeroed(head.plan.bytes());
    let train_arena = train_arena.as_mut_slice();
    {
        let mut trainer =
            Trainer::new(&head.plan, &mut params, train_arena).map_err(anyhow::Error::msg)?;
        let mut feats = vec![0.0f32; head.inputs];
        for _ in 0..5 {
            for (bx, by) in tx.chunks(len * 16).zip(ty.chunks(16)) {
                for (x, &y) in bx.chunks_exact(len).zip(by) {
                    for (d, &s) in interp
                        .input_i8(0)
                        .map_err(anyhow::Error::msg)?
                        .iter_mut()
                        .zip(x)
                    {
                        *d = s as i8;
                    }
                    head.features(&mut interp, &mut (), &mut feats)
                        .map_err(anyhow::Error::msg)?;
                    trainer
                        .accumulate(&feats, Target::Class(y as usize))
                        .map_err(anyhow::Error::msg)?;
                }
                trainer.step().map_err(anyhow::Error::msg)?;
            }
        }
    }
    let after = accuracy(&mut interp, &params)?;
    println!("\n== 4/4 summary (host path)");
    println!(
        "  f32 {:.2}%, int8 {:.2}% on the held-out digits",
        100.0 * report.float.accuracy,
        100.0 * report.int8.accuracy
    );
    println!(
        "  new sensor: {:.2}% before, {:.2}% after head-only fine-tuning ({} B of training memory)",
        100.0 * before,
        100.0 * after,
        head.plan.bytes()
    );
    Ok(())
}
