//! Writes the digits fine-tuning demo as a firmware model directory:
//! `cargo run -p mote-tests --example write_digits_demo -- <dir>`.

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/digits-demo".into());
    let demo = mote_tests::digits_demo::build();
    demo.write(std::path::Path::new(&dir))
        .expect("write the model directory");
    println!("wrote {dir} (f32 test accuracy {:.4})", demo.float_accuracy);
}
