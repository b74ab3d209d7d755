//! Writes the model directories of the apps in `examples/` (see `mote_tests::example_models`).
//! `cargo run -p mote-tests --example write_example_models`; a test checks the committed files
//! match.

fn main() {
    for model in [
        mote_tests::example_models::bare_metal(),
        mote_tests::example_models::embassy(),
    ] {
        std::fs::create_dir_all(&model.dir).expect("create the model directory");
        for (name, bytes) in &model.files {
            std::fs::write(model.dir.join(name), bytes).expect("write a model file");
        }
        println!("wrote {}", model.dir.display());
    }
}
