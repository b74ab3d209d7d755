//! The dataset layer: the bundled datasets and their fixed split, every reader on small files
//! written here byte by byte (and each reader's errors), splits, shuffles, batches and
//! normalization. The ARFF and IDX parsers' remaining error cases, the zip reader's deflate path
//! and the generator's reference values are unit tests in `host/src/data/`.

use mote_host::data::{
    basic_motions, digits, digits_split, parse_idx, parse_npy, read_csv, read_idx, read_idx_pair,
    read_npy, read_npy_pair, read_npz, read_npz_arrays, ArrayData, CsvOptions, Dataset, Header,
    LabelColumn, Normalization, NpzOptions, DIGITS_SPLIT_SEED,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh path in the temporary folder, unique to this process and call.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mote-datasets-{}-{n}-{name}", std::process::id()))
}

/// A temporary file, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Writes `bytes` to a fresh temporary file.
fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    let path = temp_path(name);
    std::fs::write(&path, bytes).unwrap();
    TempFile(path)
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const DIGITS_HISTOGRAM: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
const DIGITS_TEST_HISTOGRAM: [usize; 10] = [36, 36, 35, 37, 36, 36, 36, 36, 35, 36];

#[test]
fn digits_count_histogram_and_first_row() {
    let d = digits().unwrap();
    assert_eq!(d.len(), 1797);
    assert_eq!(d.feature_shape, vec![8, 8, 1]);
    let digit_names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert_eq!(d.class_names, digit_names);
    assert_eq!(d.class_counts(), DIGITS_HISTOGRAM);
    let (first, label) = d.sample(0);
    #[rustfmt::skip]
    let expected = [
        0, 0, 5, 13, 9, 1, 0, 0,   0, 0, 13, 15, 10, 15, 5, 0,
        0, 3, 15, 2, 0, 11, 8, 0,  0, 4, 12, 0, 0, 8, 8, 0,
        0, 5, 8, 0, 0, 9, 8, 0,    0, 4, 11, 0, 1, 12, 7, 0,
        0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0,
    ];
    assert_eq!(first, expected.map(|v| v as f32));
    assert_eq!(label, 0);
    let pixels_ok = |v: &f32| v.fract() == 0.0 && (0.0..=16.0).contains(v);
    assert!(d.features.iter().all(pixels_ok) && d.features.contains(&16.0));
}

#[test]
fn digits_split_is_the_fixed_stratified_20_percent() {
    let (train, test) = digits_split().unwrap();
    assert_eq!((train.len(), test.len()), (1438, 359));
    assert_eq!(test.class_counts(), DIGITS_TEST_HISTOGRAM);
    let train_counts = DIGITS_HISTOGRAM
        .iter()
        .zip(DIGITS_TEST_HISTOGRAM)
        .map(|(a, b)| a - b);
    assert_eq!(train.class_counts(), train_counts.collect::<Vec<_>>());

    // Together the halves are the whole dataset, each sample once.
    let all = digits().unwrap();
    let key = |d: &Dataset, i: usize| {
        let (x, y) = d.sample(i);
        let mut k: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        k.push(y);
        k
    };
    let mut whole: Vec<_> = (0..all.len()).map(|i| key(&all, i)).collect();
    let train_keys = (0..train.len()).map(|i| key(&train, i));
    let mut halves: Vec<_> = train_keys
        .chain((0..test.len()).map(|i| key(&test, i)))
        .collect();
    whole.sort();
    halves.sort();
    assert_eq!(whole, halves);

    // Deterministic: the same seed gives the same split; pinned so that it never drifts.
    let (train2, test2) = all.split(0.2, DIGITS_SPLIT_SEED);
    assert_eq!((&train2, &test2), (&train, &test));
    let pixel_sum: f64 = test.features.iter().map(|&v| f64::from(v)).sum();
    assert_eq!(pixel_sum, PINNED_TEST_PIXEL_SUM);
    assert_eq!(test.labels[..12], PINNED_TEST_FIRST_LABELS);

    // A different seed gives a different split of the same sizes.
    let (train3, test3) = all.split(0.2, DIGITS_SPLIT_SEED + 1);
    assert_eq!((train3.len(), test3.len()), (1438, 359));
    assert_eq!(test3.class_counts(), DIGITS_TEST_HISTOGRAM);
    assert_ne!(test3, test);
}

/// Fingerprints of the fixed digits test set: any change to the split rule, the generator or
/// the data shows here.
const PINNED_TEST_PIXEL_SUM: f64 = 111_512.0;
const PINNED_TEST_FIRST_LABELS: [u32; 12] = [2, 4, 5, 8, 2, 1, 2, 5, 7, 3, 7, 0];

#[test]
fn basic_motions_train_and_test() {
    let (train, test) = basic_motions().unwrap();
    assert_eq!((train.len(), test.len()), (40, 40));
    for d in [&train, &test] {
        assert_eq!(d.feature_shape, vec![1, 100, 6]);
        assert_eq!(
            d.class_names,
            names(&["Standing", "Running", "Walking", "Badminton"])
        );
        assert_eq!(d.class_counts(), vec![10, 10, 10, 10]);
    }
    // The first training recording: channel 0 starts 0.079106,0.079106,-0.903497 and channel 1
    // 0.394032; value (t, c) is at t * 6 + c.
    let (x, label) = train.sample(0);
    assert_eq!([x[0], x[6], x[12]], [0.079106, 0.079106, -0.903497]);
    assert_eq!([x[1], x[7], x[13]], [0.394032, 0.394032, -3.666397]);
    assert_eq!(x[5], 0.633883);
    assert_eq!(label, 0); // Standing
    assert_eq!(test.sample(0).0[0], -0.740653);
    assert_eq!(train.labels[39], 3); // the file ends with Badminton
}

// ---------------------------------------------------------------------------------------- CSV

/// The message of an error, with `<path>` standing for `path`.
fn err_at<T: std::fmt::Debug>(path: &Path, result: anyhow::Result<T>) -> String {
    let message = result.unwrap_err().to_string();
    message.replace(&path.display().to_string(), "<path>")
}

#[test]
fn csv_round_trip_with_and_without_header() {
    let rows = "0.5,1,2,1\n-3,4.25,5,0\n\n6,7,8e-1,2\n";
    let plain = temp_file("plain.csv", rows.as_bytes());
    let headed = temp_file("headed.csv", format!("a,b,c,label\r\n{rows}").as_bytes());
    for path in [&plain, &headed] {
        let d = read_csv(path, &CsvOptions::default()).unwrap();
        assert_eq!(d.feature_shape, [3]);
        assert_eq!(d.features, [0.5, 1.0, 2.0, -3.0, 4.25, 5.0, 6.0, 7.0, 0.8]);
        assert_eq!(
            (d.labels, d.class_names),
            (vec![1, 0, 2], names(&["0", "1", "2"]))
        );
    }

    // The label in another column, a sample shape, class names.
    let options = CsvOptions {
        label_column: LabelColumn::Index(1),
        feature_shape: Some(vec![1, 3, 1]),
        class_names: Some(names(&["cat", "dog", "eel", "fox", "gnu"])),
        ..CsvOptions::default()
    };
    let d = read_csv(temp_file("mid.csv", b"9,4,8,7\n1,0,2,3\n"), &options).unwrap();
    assert_eq!(
        (d.feature_shape, d.features),
        (vec![1, 3, 1], vec![9., 8., 7., 1., 2., 3.])
    );
    assert_eq!((d.labels, d.class_names.len()), (vec![4, 0], 5));
    let first = CsvOptions {
        label_column: LabelColumn::First,
        ..CsvOptions::default()
    };
    let d = read_csv(temp_file("first.csv", b"2,10,20\n0,30,40\n"), &first).unwrap();
    assert_eq!(
        (d.features, d.labels),
        (vec![10., 20., 30., 40.], vec![2, 0])
    );

    // Header detection: Auto and Present skip it; Absent makes it data, and an error.
    let present = CsvOptions {
        header: Header::Present,
        ..CsvOptions::default()
    };
    assert_eq!(read_csv(&headed, &present).unwrap().len(), 3);
    let absent = CsvOptions {
        header: Header::Absent,
        ..CsvOptions::default()
    };
    let err = err_at(&headed, read_csv(&headed, &absent));
    assert_eq!(err, "<path> line 1, column 1: `a` is not a number");
    // Present on a file without one drops the first row.
    assert_eq!(read_csv(&plain, &present).unwrap().labels, [0, 2]);
    // Whole-valued labels written as floats are integers.
    let d = read_csv(temp_file("f.csv", b"1,2.0\n"), &CsvOptions::default()).unwrap();
    assert_eq!(d.labels, [2]);
}

#[test]
fn csv_errors_name_the_file_line_and_problem() {
    let three = CsvOptions {
        class_names: Some(names(&["a", "b", "c"])),
        ..CsvOptions::default()
    };
    let shaped = CsvOptions {
        feature_shape: Some(vec![2, 2]),
        ..CsvOptions::default()
    };
    let beyond = CsvOptions {
        label_column: LabelColumn::Index(3),
        ..CsvOptions::default()
    };
    let default = CsvOptions::default();
    #[rustfmt::skip]
    let cases = [
        ("", &default, "<path>: empty file (no rows)"),
        ("\n  \n", &default, "<path>: empty file (no rows)"),
        ("x,y,label\n", &default, "<path>: no data rows (line 1 is a header and nothing follows)"),
        ("1,2,0\n3,4,1\n\n5,6\n", &default, "<path> line 4: 2 fields, but line 1 has 3"),
        ("a,b,c\n1,2,0,9\n", &default, "<path> line 2: 4 fields, but line 1 has 3"),
        ("1,2,0\n3,abc,1\n", &default, "<path> line 2, column 2: `abc` is not a number"),
        ("1,2,0\n3,inf,1\n", &default, "<path> line 2, column 2: `inf` is not a finite number"),
        ("1,2,0\n3,4,1.5\n", &default, "<path> line 2, column 3: label `1.5` is not an integer"),
        ("1,2,0\n3,4,one\n", &default, "<path> line 2, column 3: label `one` is not an integer"),
        ("1,2,-1\n", &default,
            "<path> line 1, column 3: label -1 is out of range (labels are 0 or more)"),
        ("1,2,0\n3,4,2\n5,6,3\n", &three,
            "<path> line 3, column 3: label 3 is out of range for 3 classes (0..=2)"),
        ("1,2,3,0\n", &shaped,
            "<path>: feature shape [2, 2] holds 4 values, but rows have 3 feature columns"),
        ("1,2,0\n", &beyond, "<path>: column 3 (0-based) is beyond the 3 columns of the first row"),
    ];
    for (text, options, expected) in cases {
        let path = temp_file("bad.csv", text.as_bytes());
        assert_eq!(
            err_at(&path, read_csv(&path, options)),
            expected,
            "{text:?}"
        );
    }
    let missing = read_csv(temp_path("absent.csv"), &default).unwrap_err();
    assert!(
        format!("{missing:#}").starts_with("reading "),
        "{missing:#}"
    );
}

/// A data logger's export: a header, quoted fields holding the delimiter, CRLF, a timestamp
/// column to skip, the label named by its header and given as words.
#[test]
fn csv_reads_quoted_fields_named_columns_and_skips_columns() {
    let text = "\"time, s\",ax,ay,activity,note\r\n\
                0.0,1.5,-2,walk,\"ok, fine\"\r\n\
                0.1,\"2.5\",-3,run,\"\"\r\n\
                \r\n\
                0.2,3.5,-4,walk,x\r\n";
    let options = CsvOptions {
        label_column: LabelColumn::Name("activity".into()),
        ignore_columns: vec![LabelColumn::Name("time, s".into()), LabelColumn::Index(4)],
        ..CsvOptions::default()
    };
    let d = read_csv(temp_file("logger.csv", text.as_bytes()), &options).unwrap();
    assert_eq!(d.feature_shape, vec![2]);
    assert_eq!(d.features, vec![1.5, -2.0, 2.5, -3.0, 3.5, -4.0]);
    assert_eq!(
        (d.labels, d.class_names),
        (vec![1, 0, 1], names(&["run", "walk"]))
    );
    // A named column the header lacks, and the label among the skipped columns.
    let absent = CsvOptions {
        label_column: LabelColumn::Name("class".into()),
        ..CsvOptions::default()
    };
    let e = read_csv(temp_file("logger.csv", text.as_bytes()), &absent).unwrap_err();
    assert!(e.to_string().contains("no column named `class`"), "{e}");
    let clash = CsvOptions {
        ignore_columns: vec![LabelColumn::Last],
        ..CsvOptions::default()
    };
    let e = read_csv(temp_file("logger.csv", text.as_bytes()), &clash).unwrap_err();
    assert!(e.to_string().contains("also an ignored column"), "{e}");
}

// ------------------------------------------------------------------------------ .npy and .npz

/// A version 1.0 `.npy` file: magic, version, header length, the header dict padded with
/// spaces and a newline to a multiple of 64 bytes, the data.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The bytes of `values`, each converted by `f` (e.g. `f32::to_le_bytes`).
fn bytes_of<const N: usize, T: Copy>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

/// A zip archive of `members`, stored (not compressed), as `np.savez` writes it.
fn stored_zip(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in members {
        let offset = out.len() as u32;
        let mut fields = vec![20, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // version 2.0, flags, stored, time
        fields.extend_from_slice(&mote_core::crc32::crc32(data).to_le_bytes());
        fields.extend_from_slice(&(data.len() as u32).to_le_bytes()); // compressed
        fields.extend_from_slice(&(data.len() as u32).to_le_bytes()); // uncompressed
        fields.extend_from_slice(&(name.len() as u16).to_le_bytes());
        fields.extend_from_slice(&[0; 2]); // extra length
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend(fields.iter().chain(name.as_bytes()).chain(data));
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend(fields.iter().chain(&[0; 10])); // comment length, disk, attributes
        central.extend(offset.to_le_bytes().iter().chain(name.as_bytes()));
    }
    let dir_at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&dir_at.to_le_bytes());
    out.extend_from_slice(&[0; 2]); // comment length
    out
}

#[test]
fn npy_reads_each_dtype_exactly() {
    let parse = |bytes: Vec<u8>| parse_npy(&bytes, "a.npy").unwrap();
    let f32s = [1.5f32, -0.1, 3.0e-8, f32::MAX, 0.0, -7.25];
    let a = parse(npy("<f4", &[2, 3], &bytes_of(&f32s, f32::to_le_bytes)));
    assert_eq!(
        (a.shape, a.data),
        (vec![2, 3], ArrayData::F32(f32s.to_vec()))
    );
    let a = parse(npy(">f4", &[6], &bytes_of(&f32s, f32::to_be_bytes)));
    assert_eq!(a.data, ArrayData::F32(f32s.to_vec()));

    let f64s = [0.1f64, -2.5, 1e300];
    let a = parse(npy("<f8", &[3], &bytes_of(&f64s, f64::to_le_bytes)));
    assert_eq!(a.data, ArrayData::F64(f64s.to_vec()));
    assert_eq!(a.to_f32(), [0.1f32, -2.5, f32::INFINITY]);

    let a = parse(npy("|u1", &[2, 2], &[0, 7, 200, 255]));
    assert_eq!(a.data, ArrayData::U8(vec![0, 7, 200, 255]));
    assert_eq!(a.to_labels("d").unwrap(), [0, 7, 200, 255]);

    let i64s = [3i64, 0, -1, 1 << 40];
    let a = parse(npy("<i8", &[4], &bytes_of(&i64s, i64::to_le_bytes)));
    assert_eq!(a.data, ArrayData::I64(i64s.to_vec()));
    let err = a.to_labels("e.npy").unwrap_err().to_string();
    assert_eq!(
        err,
        "e.npy: element 2 is -1, not a label (a whole number from 0 to 4294967295)"
    );

    // A 0-d array (shape `()`) holds one element; version 2.0 has a 4-byte header length.
    let a = parse(npy("<f4", &[], &2.0f32.to_le_bytes()));
    assert_eq!((a.shape, a.data), (vec![], ArrayData::F32(vec![2.0])));
    let mut v2 = npy("|u1", &[3], &[1, 2, 3]);
    let header_len = u16::from_le_bytes([v2[8], v2[9]]) as u32;
    v2[6] = 2;
    v2.splice(8..10, header_len.to_le_bytes());
    assert_eq!(parse(v2).data, ArrayData::U8(vec![1, 2, 3]));
}

#[test]
fn npy_errors_are_clear() {
    let mut fortran = npy("<f4", &[2, 2], &[0; 16]);
    let at = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[at..at + 5].copy_from_slice(b"True ");
    #[rustfmt::skip]
    let cases = [
        (npy("<c8", &[1], &[0; 8]),
            "unsupported dtype `<c8` (supported: uint8, int8, int16, int32, int64, float32, float64)"),
        (npy("<f4", &[2, 3], &[0; 20]),
            "truncated .npy file: shape [2, 3] of `<f4` needs 24 data bytes, only 20 are there"),
        (npy("|u1", &[2], &[1, 2, 3]),
            "1 unexpected bytes after the 2 data bytes of shape [2] of `|u1`"),
        (b"PK\x03\x04 not npy".to_vec(), "not a .npy file (it does not start with \\x93NUMPY)"),
        (npy("<f4", &[4], &[0; 16])[..40].to_vec(),
            "truncated .npy file: the header needs 118 bytes, 30 are left"),
        (fortran, "Fortran-order arrays are not supported (save np.ascontiguousarray(a))"),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            parse_npy(&bytes, "x.npy").unwrap_err().to_string(),
            format!("x.npy: {expected}")
        );
    }
}

#[test]
fn npy_pair_and_npz_make_datasets() {
    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
    let x_npy = npy("<f4", &[3, 2, 2], &bytes_of(&x, f32::to_le_bytes));
    let y_npy = npy("<i8", &[3], &bytes_of(&[2i64, 0, 1], i64::to_le_bytes));
    let d = read_npy_pair(temp_file("x.npy", &x_npy), temp_file("y.npy", &y_npy), None).unwrap();
    assert_eq!((&d.features, &d.feature_shape), (&x, &vec![2, 2]));
    assert_eq!(
        (&d.labels, &d.class_names),
        (&vec![2, 0, 1], &names(&["0", "1", "2"]))
    );
    assert_eq!(read_npy(temp_file("y2.npy", &y_npy)).unwrap().shape, [3]);

    let members = [("x.npy", x_npy.clone()), ("y.npy", y_npy)];
    let path = temp_file("xy.npz", &stored_zip(&members));
    assert_eq!(read_npz(&path, &NpzOptions::default()).unwrap(), d);
    let arrays = read_npz_arrays(&path).unwrap();
    assert_eq!(
        arrays.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["x", "y"]
    );

    // Other names, class names that bound the labels, float labels with whole values.
    let y_f64 = npy(
        "<f8",
        &[3, 1],
        &bytes_of(&[1.0f64, 1.0, 0.0], f64::to_le_bytes),
    );
    let path = temp_file(
        "named.npz",
        &stored_zip(&[("images.npy", x_npy), ("targets.npy", y_f64)]),
    );
    let options = NpzOptions {
        x: "images".into(),
        y: "targets".into(),
        class_names: Some(names(&["no", "yes"])),
    };
    let d = read_npz(&path, &options).unwrap();
    assert_eq!(
        (d.labels, d.class_names),
        (vec![1, 1, 0], names(&["no", "yes"]))
    );
    let err = err_at(&path, read_npz(&path, &NpzOptions::default()));
    assert_eq!(err, "<path>: no array `x` (it holds: images, targets)");
    let one = NpzOptions {
        class_names: Some(names(&["a"])),
        ..options
    };
    let err = err_at(&path, read_npz(&path, &one));
    assert_eq!(
        err,
        "<path>, array `targets`: element 0 is label 1, out of range for 1 classes"
    );

    // A corrupted member fails its CRC; labels that do not match the samples are an error.
    let mut zip = stored_zip(&[("x.npy", npy("|u1", &[2], &[1, 2]))]);
    zip[30 + "x.npy".len() + 64] ^= 0xFF; // the first data byte
    let bad = temp_file("bad.npz", &zip);
    let err = err_at(&bad, read_npz_arrays(&bad));
    assert!(
        err.starts_with("<path>: member `x.npy` fails its CRC-32 check (stored "),
        "{err}"
    );
    let x3 = temp_file("x3.npy", &npy("|u1", &[3, 1], &[1, 2, 3]));
    let err = err_at(
        &x3,
        read_npy_pair(&x3, temp_file("y.npy", &npy("|u1", &[2], &[0, 1])), None),
    );
    assert!(
        err.ends_with(
            ": labels of shape [2] do not match 3 samples in <path> (expected [3] or [3, 1])"
        ),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------ IDX

fn idx(type_code: u8, shape: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, shape.len() as u8];
    for d in shape {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[test]
fn idx_images_and_labels_read_back_exactly() {
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    let images = temp_file("images-idx3-ubyte", &idx(0x08, &[2, 2, 3], &pixels));
    let labels = temp_file("labels-idx1-ubyte", &idx(0x08, &[2], &[7, 3]));
    let a = read_idx(&images).unwrap();
    assert_eq!(
        (a.shape, a.data),
        (vec![2, 2, 3], ArrayData::U8(pixels.clone()))
    );
    let d = read_idx_pair(&images, &labels, None).unwrap();
    assert_eq!(d.feature_shape, [2, 3, 1]);
    assert_eq!(
        d.features,
        pixels.iter().map(|&p| f32::from(p)).collect::<Vec<_>>()
    );
    assert_eq!((d.labels, d.class_names.len()), (vec![7, 3], 8));

    let floats = [1.25f32, -3.0];
    let a = parse_idx(&idx(0x0D, &[2], &bytes_of(&floats, f32::to_be_bytes)), "f").unwrap();
    assert_eq!(a.data, ArrayData::F32(floats.to_vec()));
    let a = parse_idx(&idx(0x0B, &[1, 2], &[0x01, 0x02, 0xFF, 0xFE]), "s").unwrap();
    assert_eq!(a.data, ArrayData::I16(vec![0x0102, -2]));

    // A bad magic number (the parser's other errors: `cargo test -p mote-host idx`); labels
    // that do not match the images.
    let err = parse_idx(&[0x12, 0x34, 0x08, 0x01, 0, 0, 0, 0], "t10k")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t10k: bad IDX magic number 0x12340801 (expected 0x0000TTDD"),
        "{err}"
    );
    let images = temp_file("i", &idx(0x08, &[3, 1, 1], &[1, 2, 3]));
    let labels = temp_file("l", &idx(0x08, &[2], &[0, 1]));
    let err = err_at(&labels, read_idx_pair(&images, &labels, None));
    assert!(
        err.starts_with("<path>: labels of shape [2] do not match 3 samples"),
        "{err}"
    );
}

// ---------------------------------------------------------------- splits, shuffles, batches

#[test]
fn dataset_checks_shuffles_and_batches() {
    let err = Dataset::new(vec![0.0; 5], vec![2], vec![0, 0], names(&["a"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "5 feature values do not make 2 samples of shape [2] (2 values each)"
    );
    let err = Dataset::new(vec![0.0; 2], vec![1], vec![0, 1], names(&["a"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sample 1 has label 1, but there are 1 classes"
    );

    // Ten samples [2i, 2i + 1] with label i % 3.
    let features = (0..20).map(|i| i as f32).collect();
    let labels = (0..10).map(|i| i % 3).collect();
    let d = Dataset::new(features, vec![2], labels, names(&["a", "b", "c"])).unwrap();
    assert_eq!(d.sample(3), (&[6.0, 7.0][..], 0));
    let (mut s, mut again, mut other) = (d.clone(), d.clone(), d.clone());
    s.shuffle(42);
    again.shuffle(42);
    other.shuffle(43);
    assert_eq!(s, again);
    assert_ne!(s, d);
    assert_ne!(other, s);
    // A permutation that keeps each sample's features with its label.
    let mut firsts: Vec<u32> = (0..s.len()).map(|i| s.sample(i).0[0] as u32).collect();
    for i in 0..s.len() {
        let (x, y) = s.sample(i);
        assert_eq!((x[1], y), (x[0] + 1.0, (x[0] as u32 / 2) % 3));
    }
    firsts.sort();
    assert_eq!(firsts, (0..10).map(|i| i * 2).collect::<Vec<_>>());

    let batches: Vec<_> = d.batches(4).collect();
    assert_eq!(d.batches(4).len(), 3);
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(batches[1].features, &d.features[8..16]);
    assert_eq!(batches[2].labels, &[2, 0]);
    assert_eq!(d.batches(10).count(), 1);

    // Split edge cases: nothing or everything held out.
    assert_eq!(d.split(0.0, 1), (d.clone(), d.subset(&[])));
    assert_eq!(d.split(1.0, 1), (d.subset(&[]), d.clone()));
}

// ------------------------------------------------------------------------------ normalization

#[test]
fn normalization_fit_apply_invert_and_serde() {
    // Channel 0 holds 2, 4, 4, 4, 5, 5, 7, 9 (mean 5, population std 2); channel 1 is constant.
    let c0 = [2.0f32, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    let features: Vec<f32> = c0.iter().flat_map(|&v| [v, 3.0]).collect();
    let mut d = Dataset::new(
        features.clone(),
        vec![1, 4, 2],
        vec![0, 1],
        names(&["a", "b"]),
    );
    let d = d.as_mut().unwrap();
    let norm = Normalization::fit(d);
    assert_eq!(
        norm,
        Normalization {
            mean: vec![5.0, 3.0],
            std: vec![2.0, 1.0]
        }
    );

    norm.apply(d).unwrap();
    let expected: Vec<f32> = c0.iter().flat_map(|&v| [(v - 5.0) / 2.0, 0.0]).collect();
    assert_eq!(d.features, expected);
    norm.invert(d).unwrap();
    for (a, b) in d.features.iter().zip(&features) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }

    let json = serde_json::to_string(&norm).unwrap();
    assert_eq!(json, r#"{"mean":[5.0,3.0],"std":[2.0,1.0]}"#);
    assert_eq!(serde_json::from_str::<Normalization>(&json).unwrap(), norm);

    let mut wrong = Dataset::new(vec![0.0; 3], vec![1, 3], vec![0], names(&["a"])).unwrap();
    let err = norm.apply(&mut wrong).unwrap_err().to_string();
    let expected =
        "the normalization has 2 channels, but the dataset's samples (shape [1, 3]) have 3";
    assert_eq!(err, expected);
}

#[test]
fn normalization_on_the_digits_split() {
    let (mut train, mut test) = digits_split().unwrap();
    let norm = Normalization::fit(&train);
    assert_eq!(norm.channels(), 1);
    let raw = test.features.clone();
    norm.apply(&mut train).unwrap();
    norm.apply(&mut test).unwrap();
    let n = train.features.len() as f64;
    let mean = train.features.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = train
        .features
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-5,
        "mean {mean}, variance {var}"
    );
    norm.invert(&mut test).unwrap();
    for (a, b) in test.features.iter().zip(&raw) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

/// A label column of names (as data loggers write them) becomes classes in sorted order, whose
/// names the dataset keeps (they reach `model.rs`); a name outside given classes is an error.
#[test]
fn named_labels_become_classes() {
    use mote_host::data::{parse_csv, CsvOptions};
    let text = "a,b,activity\n1,2,walk\n3,4,run\n5,6,walk\n7,8,idle\n";
    let set = parse_csv(text.as_bytes(), "log.csv", &CsvOptions::default()).unwrap();
    assert_eq!(set.class_names, ["idle", "run", "walk"]);
    assert_eq!(set.labels, [2, 1, 2, 0]);
    let given = CsvOptions {
        class_names: Some(vec!["walk".into(), "run".into()]),
        ..CsvOptions::default()
    };
    let e = parse_csv(text.as_bytes(), "log.csv", &given)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label `idle` is not one of the classes"), "{e}");
}

/// Header detection looks at the feature columns (a label may be a name) and, for a label that
/// is not a number, at the row below it.
#[test]
fn a_header_is_told_from_a_first_row_with_a_named_label() {
    use mote_host::data::{parse_csv, CsvOptions};
    let parse = |text: &str| parse_csv(text.as_bytes(), "t.csv", &CsvOptions::default()).unwrap();
    assert_eq!(
        parse("1,2,walk\n3,4,run\n").len(),
        2,
        "no header: both rows are samples"
    );
    assert_eq!(parse("a,b,activity\n1,2,walk\n").len(), 1);
    assert_eq!(
        parse("0,1,label\n1,2,0\n3,4,1\n").len(),
        2,
        "numbered columns, named label"
    );
}

/// `--data x.npy` finds its labels beside it (`y.npy` here), and says where it looked.
#[test]
fn npy_features_find_their_labels_beside_them() {
    use mote_host::data::read_file_source;
    let dir = std::env::temp_dir().join(format!("mote-npy-beside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = bytes_of(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], f32::to_le_bytes);
    std::fs::write(dir.join("x.npy"), npy("<f4", &[3, 2], &x)).unwrap();
    let e = read_file_source(&dir.join("x.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels file is missing") && e.contains("y.npy"),
        "{e}"
    );
    let y = bytes_of(&[0i64, 1, 0], i64::to_le_bytes);
    std::fs::write(dir.join("y.npy"), npy("<i8", &[3], &y)).unwrap();
    let set = read_file_source(&dir.join("x.npy")).unwrap();
    assert_eq!((set.len(), set.feature_shape.clone()), (3, vec![2]));
    std::fs::remove_dir_all(&dir).ok();
}
