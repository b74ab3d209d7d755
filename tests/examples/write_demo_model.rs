//! Writes the firmware's default model directory (`firmware/models/demo/`: `model.mote` and
//! `test_inputs.i8`) from the committed golden case. `cargo run -p mote-tests --example
//! write_demo_model`; a test checks the committed files match.

fn main() {
    let (blob, input, _) = mote_tests::lowering::demo_model();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/models/demo");
    std::fs::create_dir_all(&dir).expect("create firmware/models");
    std::fs::write(dir.join("model.mote"), &blob).expect("write model.mote");
    std::fs::write(dir.join("test_inputs.i8"), &input).expect("write test_inputs.i8");
    println!(
        "wrote {} model bytes and {} input bytes to {}",
        blob.len(),
        input.len(),
        dir.display()
    );
}
