//! `.tflite` import on files that are broken, unsupported or adversarial: each gets a precise
//! error (or, where TFLite would accept the file, a model), never a panic.
//!
//! The unsupported cases are built by patching the MLPerf Tiny models in `tests/mlperf/` in
//! place, with a small flatbuffer navigator that trusts its (valid) input.

use mote_host::tflite::{import_tflite, infer, read_tflite};
use mote_tests::synth::Rng;
use std::path::Path;

fn model(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mlperf")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn kws() -> Vec<u8> {
    model("kws_ref_model.tflite")
}

fn import_error(bytes: &[u8]) -> String {
    match import_tflite(bytes) {
        Ok(_) => panic!("the import succeeded"),
        Err(e) => format!("{e:#}"),
    }
}

/// Positions inside a valid `.tflite` file (schema field numbers as in `schema.fbs`).
struct Nav<'a>(&'a [u8]);

impl Nav<'_> {
    fn u16(&self, at: usize) -> usize {
        u16::from_le_bytes(self.0[at..at + 2].try_into().unwrap()) as usize
    }
    fn u32(&self, at: usize) -> usize {
        u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap()) as usize
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.0[at..at + 4].try_into().unwrap())
    }
    fn deref(&self, at: usize) -> usize {
        at + self.u32(at)
    }
    /// Where field `id` of the table at `table` is stored, if present.
    fn field(&self, table: usize, id: usize) -> Option<usize> {
        let vtable = (table as i64 - i64::from(self.i32(table))) as usize;
        let slot = 4 + 2 * id;
        if slot + 2 > self.u16(vtable) {
            return None;
        }
        let offset = self.u16(vtable + slot);
        (offset != 0).then_some(table + offset)
    }
    /// The first element's position and the length of the vector in field `id`.
    fn vector(&self, table: usize, id: usize) -> (usize, usize) {
        let v = self.deref(self.field(table, id).expect("vector field present"));
        (v + 4, self.u32(v))
    }
    /// Table `i` of the vector of tables in field `id`.
    fn table(&self, table: usize, id: usize, i: usize) -> usize {
        let (start, len) = self.vector(table, id);
        assert!(i < len);
        self.deref(start + 4 * i)
    }
    fn root(&self) -> usize {
        self.u32(0)
    }
    fn opcode(&self, i: usize) -> usize {
        self.table(self.root(), 1, i)
    }
    fn subgraph(&self) -> usize {
        self.table(self.root(), 2, 0)
    }
    fn operator(&self, k: usize) -> usize {
        self.table(self.subgraph(), 3, k)
    }
    fn tensor(&self, i: usize) -> usize {
        self.table(self.subgraph(), 0, i)
    }
    /// The builtin codes in the model's operator code list (the larger of the two fields).
    fn builtin_codes(&self) -> Vec<i32> {
        let (_, n) = self.vector(self.root(), 1);
        (0..n)
            .map(|i| {
                let t = self.opcode(i);
                let old = self.field(t, 0).map_or(0, |at| i32::from(self.0[at] as i8));
                let new = self.field(t, 3).map_or(0, |at| self.i32(at));
                old.max(new)
            })
            .collect()
    }
    /// Byte ranges of every buffer's data.
    fn buffer_data(&self) -> Vec<std::ops::Range<usize>> {
        let (_, n) = self.vector(self.root(), 4);
        (0..n)
            .filter_map(|i| {
                let b = self.table(self.root(), 4, i);
                self.field(b, 0).map(|at| {
                    let v = self.deref(at);
                    v + 4..v + 4 + self.u32(v)
                })
            })
            .collect()
    }
}

#[test]
fn short_and_truncated_files_are_errors() {
    let bytes = kws();
    for len in 0..8 {
        let e = import_error(&bytes[..len]);
        assert!(e.contains("shorter than a flatbuffer header"), "{len}: {e}");
    }
    let e = import_error(&bytes[..bytes.len() / 2]);
    assert!(e.contains("malformed flatbuffer"), "{e}");
    assert!(
        e.contains(&format!(
            "past the end of the {}-byte file",
            bytes.len() / 2
        )),
        "{e}"
    );
    // Every prefix: an error or (if only padding was cut) a model, never a panic.
    let mut rejected = 0;
    for len in (0..bytes.len())
        .step_by(97)
        .chain(bytes.len() - 64..bytes.len())
    {
        if import_tflite(&bytes[..len]).is_err() {
            rejected += 1;
        }
    }
    assert!(rejected > 500, "{rejected}");
}

#[test]
fn files_that_are_not_tflite_are_errors() {
    let text = b"this is not a flatbuffer, just some text that is long enough to be one";
    let e = import_error(text);
    assert_eq!(e, "not a .tflite file: no `TFL3` identifier at byte 4");

    // The right identifier but nothing behind it.
    let mut fake = vec![0xEEu8; 64];
    fake[4..8].copy_from_slice(b"TFL3");
    let e = import_error(&fake);
    assert!(e.starts_with("malformed flatbuffer"), "{e}");

    // A .mote blob is not a .tflite file, but `infer` runs both.
    let built = import_tflite(&kws()).unwrap();
    let e = import_error(&built.bytes);
    assert!(e.starts_with("not a .tflite file"), "{e}");
    let e = infer(text, &[0; 490]).unwrap_err();
    assert!(format!("{e}").contains("neither a .mote blob"), "{e}");
}

#[test]
fn infer_checks_the_input_length() {
    let bytes = kws();
    let e = infer(&bytes, &[0; 491]).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "the input is 491 bytes, not a whole number of 490-byte input vectors"
    );
    assert!(infer(&bytes, &[]).is_err());
    assert_eq!(infer(&bytes, &[0; 980]).unwrap().len(), 24);
}

#[test]
fn wrong_schema_version_is_an_error() {
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let at = nav.field(nav.root(), 0).unwrap();
    bytes[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "schema version 2 is not supported (TFLite's is 3)"
    );
}

#[test]
fn an_unsupported_operator_is_named_with_its_count() {
    // KWS's operator 9 is AVERAGE_POOL_2D v2 (operator code 2, the one-byte field only);
    // make it L2_POOL_2D (12), which mote lacks.
    let mut bytes = kws();
    let nav = Nav(&bytes);
    assert_eq!(nav.builtin_codes()[2], 1);
    let code = nav.opcode(2);
    assert!(nav.field(code, 3).is_none());
    let at = nav.field(code, 0).unwrap();
    bytes[at] = 12;
    assert_eq!(
        import_error(&bytes),
        "mote does not support operators L2_POOL_2D (1 use) in this model \
         (`mote import --help` lists what it does)"
    );
    let graph = read_tflite(&bytes).unwrap();
    assert_eq!(graph.operators[9].name, "L2_POOL_2D");
    assert_eq!(graph.operators[9].version, 2);
}

#[test]
fn the_builtin_code_is_the_larger_of_its_two_fields() {
    // ResNet-8 writes both fields. Operator code 4 is FULLY_CONNECTED (9) v4, used by
    // operator 14.
    let original = model("pretrainedResnet_quant.tflite");
    let nav = Nav(&original);
    assert_eq!(nav.builtin_codes()[4], 9);
    let code = nav.opcode(4);
    let (old, new) = (nav.field(code, 0).unwrap(), nav.field(code, 3).unwrap());

    // Zeroing either field leaves FULLY_CONNECTED.
    for at in [old, new] {
        let mut bytes = original.clone();
        bytes[at] = 0;
        let graph = read_tflite(&bytes).unwrap();
        assert_eq!(graph.operators[14].name, "FULLY_CONNECTED");
    }
    // A larger extended code wins over the one-byte field: GELU (150).
    let mut bytes = original.clone();
    bytes[new..new + 4].copy_from_slice(&150i32.to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "mote does not support operators GELU (1 use) in this model \
         (`mote import --help` lists what it does)"
    );
    // Codes past the names mote knows are named by number.
    bytes[new..new + 4].copy_from_slice(&4000i32.to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "mote does not support operators BUILTIN_4000 (1 use) in this model \
         (`mote import --help` lists what it does)"
    );
}

#[test]
fn operator_codes_no_operator_uses_are_ignored() {
    for file in ["vww_96_int8.tflite", "pretrainedResnet_quant.tflite"] {
        let mut bytes = model(file);
        let nav = Nav(&bytes);
        let codes = nav.builtin_codes();
        // QUANTIZE (114) and DEQUANTIZE (6) are listed, last, but no operator uses them.
        assert_eq!(codes[codes.len() - 2..], [114, 6], "{file}");
        let graph = read_tflite(&bytes).unwrap();
        assert!(
            graph
                .operators
                .iter()
                .all(|op| op.name != "QUANTIZE" && op.name != "DEQUANTIZE"),
            "{file}"
        );
        // Even garbage in them goes unnoticed: point both entries outside the file.
        let (start, n) = nav.vector(nav.root(), 1);
        for i in n - 2..n {
            let at = start + 4 * i;
            bytes[at..at + 4].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
        }
        import_tflite(&bytes).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    }
}

#[test]
fn an_unsupported_fused_activation_is_named() {
    // KWS's operator 0 is CONV_2D with a fused RELU (1); make it TANH (4).
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let options = nav.deref(nav.field(nav.operator(0), 4).unwrap());
    let (at, stride) = (
        nav.field(options, 3).unwrap(),
        nav.field(options, 1).unwrap(),
    );
    assert_eq!(bytes[at], 1);
    bytes[at] = 4;
    assert_eq!(
        import_error(&bytes),
        "operator 0 (CONV_2D v3): fused activation TANH is not supported (NONE, RELU, RELU6 are)"
    );
    bytes[at] = 2;
    assert!(import_error(&bytes).contains("fused activation RELU_N1_TO_1 is not supported"));
    // A zero stride is refused by name too.
    bytes[at] = 1;
    bytes[stride..stride + 4].copy_from_slice(&0i32.to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "operator 0 (CONV_2D v3): stride_w is 0; it must be at least 1"
    );
}

#[test]
fn an_unsupported_tensor_type_names_the_tensor() {
    // KWS's input (tensor 0) is INT8 (9); make it UINT8 (3): a type mote has, but not one
    // CONV_2D takes.
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let at = nav.field(nav.tensor(0), 1).unwrap();
    assert_eq!(bytes[at], 9);
    bytes[at] = 3;
    assert_eq!(
        import_error(&bytes),
        "operator 0 (CONV_2D): input `input_1` is uint8; this operator needs int8"
    );
    // A weight of a type mote lacks (FLOAT16, 1): the error names its first user.
    let mut bytes = kws();
    let at = Nav(&bytes).field(Nav(&bytes).tensor(17), 1).unwrap();
    bytes[at] = 1;
    assert_eq!(
        import_error(&bytes),
        "mote does not support tensor types FLOAT16 (1 tensor) in this model (`mote import \
         --help` lists what it does); the first is tensor 17 `functional_1/conv2d/Conv2D` \
         (input 1 of operator 0, CONV_2D v3)"
    );
}

#[test]
fn an_int8_zero_point_outside_int8_is_an_error() {
    // KWS's input is quantized with zero point 83.
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let quant = nav.deref(nav.field(nav.tensor(0), 4).unwrap());
    let (zero_points, n) = nav.vector(quant, 3);
    assert_eq!(n, 1);
    bytes[zero_points..zero_points + 8].copy_from_slice(&(-1i64 << 31).to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "tensor 0 `input_1` (subgraph input 0): zero point -2147483648 is outside the int8 range"
    );
}

#[test]
fn unused_tensors_are_dropped_whatever_their_type() {
    // KWS's RESHAPE (operator 10) reads its shape from tensor 2; mark that input omitted (-1)
    // and nothing uses tensor 2 any more; then give it a type mote lacks.
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let (inputs, n) = nav.vector(nav.operator(10), 1);
    assert_eq!(n, 2);
    assert_eq!(nav.i32(inputs + 4), 2);
    let at = nav.field(nav.tensor(2), 1).unwrap();
    bytes[inputs + 4..inputs + 8].copy_from_slice(&(-1i32).to_le_bytes());
    bytes[at] = 4; // INT64
    let graph = read_tflite(&bytes).unwrap();
    assert_eq!(graph.tensors.len(), 34);
    assert!(graph
        .tensors
        .iter()
        .all(|t| t.name != "functional_1/flatten/Const"));
    assert_eq!(graph.operators[10].inputs.len(), 2);
    assert_eq!(graph.operators[10].inputs[1], None);
    // The model still runs, and still matches TFLite-Micro.
    let input =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf/golden/kws_real_in.i8"))
            .unwrap();
    let expected = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf/golden/kws_real_out_tflm.i8"),
    )
    .unwrap();
    assert_eq!(infer(&bytes, &input).unwrap(), expected);
}

#[test]
fn a_bad_tensor_index_is_named() {
    let mut bytes = kws();
    let nav = Nav(&bytes);
    let (inputs, _) = nav.vector(nav.operator(3), 1);
    bytes[inputs..inputs + 4].copy_from_slice(&999i32.to_le_bytes());
    assert_eq!(
        import_error(&bytes),
        "operator 3 (DEPTHWISE_CONV_2D v3): input 0 names tensor 999; the subgraph has 35 tensors"
    );
}

/// Mutates `bytes` 1 to 4 times, mostly outside the weights (where the structure is).
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, structural: &[usize]) {
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len() as u32;
        let at = if rng.below(5) == 0 {
            rng.below(len) as usize
        } else {
            structural[rng.below(structural.len() as u32) as usize]
        };
        if at >= bytes.len() {
            continue;
        }
        match rng.below(6) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = rng.next_u32() as u8,
            2 => {
                // A boundary value in a 32-bit field (offsets, lengths, indices, dimensions).
                let at = at & !3;
                let v = [
                    u32::MAX,
                    0x8000_0000,
                    0x7FFF_FFFF,
                    0xFFFF,
                    0,
                    1,
                    len,
                    rng.next_u32(),
                ][rng.below(8) as usize];
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            3 => bytes[at] = bytes[at].wrapping_add(1),
            4 => bytes[at] = bytes[at].wrapping_sub(1),
            _ => bytes.truncate(rng.below(len) as usize),
        }
    }
}

#[test]
fn thousands_of_mutations_never_panic() {
    let models = [kws(), model("pretrainedResnet_quant.tflite")];
    let structural: Vec<Vec<usize>> = models
        .iter()
        .map(|m| {
            let data = Nav(m).buffer_data();
            (0..m.len())
                .filter(|i| !data.iter().any(|r| r.contains(i)))
                .collect()
        })
        .collect();
    let mut rng = Rng::new(0x7F1_17E);
    let (mut imported, mut ran, mut rejected) = (0usize, 0usize, 0usize);
    for round in 0..6_000 {
        let which = round % models.len();
        let mut bytes = models[which].clone();
        mutate(&mut rng, &mut bytes, &structural[which]);
        let outcome = std::panic::catch_unwind(|| {
            let graph = read_tflite(&bytes);
            let built = import_tflite(&bytes);
            assert!(graph.is_ok() || built.is_err());
            let built = built.ok()?;
            // Run one vector through one in eight of the models that import.
            if round % 8 == 0 {
                let aligned = mote_host::AlignedBytes::new(&built.bytes);
                let model = mote_core::Model::parse(aligned.as_slice()).ok()?;
                let input_len = model.input(0).ok()?.arena_range().len();
                if built.arena_size <= 1 << 24 {
                    return Some(infer(&built.bytes, &vec![0u8; input_len]).is_ok());
                }
            }
            Some(false)
        });
        match outcome {
            Ok(None) => rejected += 1,
            Ok(Some(true)) => {
                imported += 1;
                ran += 1;
            }
            Ok(Some(false)) => imported += 1,
            Err(_) => panic!("round {round}: a mutated model made the importer panic"),
        }
    }
    println!("{imported} mutated models imported ({ran} run), {rejected} rejected with an error");
    assert!(
        rejected > 1_000,
        "only {rejected} rejections: mutations are too weak"
    );
}
