//! What the `data_loaders` fuzz target found in the data readers, each a regression test.

use mote_host::data::{parse_csv, CsvOptions};

/// Without class names a reader names every class from 0 to the largest label, so the
/// 12-byte CSV `0,\x0c511151114` allocated 511,151,115 strings (12 GB: the fuzzer's
/// out-of-memory report). It is an error that names the label.
#[test]
fn a_huge_numeric_label_is_an_error_not_gigabytes_of_class_names() {
    let e = parse_csv(b"0,\x0c511151114", "fuzz.csv", &CsvOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("511151114"), "{e:#}");
}
