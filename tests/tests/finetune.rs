//! The on-device fine-tuning path, run on the host: an int8 digits model trained and
//! quantized by mote, its head re-learned in f32 on features from the frozen int8 backbone.

use mote_core::train::{Head, Sgd, Target, Trainer};
use mote_core::{Interpreter, Model};
use mote_host::quantize::quantize_input;
use mote_host::AlignedBytes;
use mote_tests::digits_demo::{build, Samples};

fn int8_accuracy(interpreter: &mut Interpreter, s: &Samples, q: (f32, i32)) -> f32 {
    let mut hits = 0;
    for (x, &y) in s.x.iter().zip(&s.y) {
        interpreter
            .input_i8(0)
            .unwrap()
            .copy_from_slice(&quantize_input(x, q));
        interpreter.invoke().unwrap();
        let out = interpreter.output_i8(0).unwrap();
        let best = (0..out.len())
            .max_by_key(|&i| (out[i], std::cmp::Reverse(i)))
            .unwrap();
        hits += usize::from(best == y as usize);
    }
    hits as f32 / s.x.len() as f32
}

#[test]
fn int8_digits_model_matches_float_and_its_head_learns_a_new_sensor() {
    let demo = build();
    let q = demo.quantized.input;
    let blob = AlignedBytes::new(&demo.quantized.built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = mote_host::AlignedBytes::zeroed(model.arena_size());
    let arena = arena.as_mut_slice();
    let mut interpreter = Interpreter::new(model, arena).unwrap();

    let clean = int8_accuracy(&mut interpreter, &demo.test, q);
    println!(
        "digits MLP: f32 {:.4}, int8 {clean:.4}",
        demo.float_accuracy
    );
    assert!(
        demo.float_accuracy >= 0.95,
        "f32 accuracy {}",
        demo.float_accuracy
    );
    assert!(
        (demo.float_accuracy - clean).abs() <= 0.01,
        "int8 {clean} vs f32 {}",
        demo.float_accuracy
    );

    let before = int8_accuracy(&mut interpreter, &demo.finetune_test, q);
    let head = Head::find(&model, Sgd::new(0.05).with_momentum(0.9)).unwrap();
    assert_eq!((head.inputs, head.outputs), (32, 10));
    let mut params = vec![0.0f32; head.param_count()];
    head.init_params(&model, &mut params).unwrap();
    let mut features = vec![0.0f32; head.inputs];
    let predict_all = |interpreter: &mut Interpreter, params: &[f32], s: &Samples| {
        let mut features = vec![0.0f32; head.inputs];
        let hits = s.x.iter().zip(&s.y).filter(|(x, &y)| {
            interpreter
                .input_i8(0)
                .unwrap()
                .copy_from_slice(&quantize_input(x, q));
            head.features(interpreter, &mut (), &mut features).unwrap();
            head.predict(params, &features).unwrap() == y as usize
        });
        hits.count() as f32 / s.x.len() as f32
    };
    // The dequantized head predicts like the int8 head (not bit-for-bit: f32 vs requantized).
    let before_f32_head = predict_all(&mut interpreter, &params, &demo.finetune_test);
    assert!(
        (before_f32_head - before).abs() < 0.03,
        "{before_f32_head} vs {before}"
    );

    let mut train_arena = mote_host::AlignedBytes::zeroed(head.plan.bytes());
    let train_arena = train_arena.as_mut_slice();
    {
        let mut trainer = Trainer::new(&head.plan, &mut params, train_arena).unwrap();
        for _epoch in 0..5 {
            for (batch_x, batch_y) in demo.finetune.x.chunks(16).zip(demo.finetune.y.chunks(16)) {
                for (x, &y) in batch_x.iter().zip(batch_y) {
                    interpreter
                        .input_i8(0)
                        .unwrap()
                        .copy_from_slice(&quantize_input(x, q));
                    head.features(&mut interpreter, &mut (), &mut features)
                        .unwrap();
                    trainer
                        .accumulate(&features, Target::Class(y as usize))
                        .unwrap();
                }
                trainer.step().unwrap();
            }
        }
    }
    let after = predict_all(&mut interpreter, &params, &demo.finetune_test);
    println!(
        "new sensor: int8 {before:.4} before, {after:.4} after head-only fine-tuning ({} B of training memory, {} parameters)",
        head.plan.bytes(),
        params.len()
    );
    assert!(after >= before + 0.15, "before {before}, after {after}");
}
