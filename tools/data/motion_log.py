#!/usr/bin/env python3
"""Writes data/motion-log/: BasicMotions (data/basic-motions) as a data logger would have
recorded it: one row per time step (10 Hz) with a timestamp and the activity's name, the
recordings one after another in the archive's order (ten of each activity in a row).
Standard library only.

    python3 tools/data/motion_log.py
"""
import gzip
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "basic-motions"
OUT = ROOT / "data" / "motion-log"
COLUMNS = ["time_s", "acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z", "activity"]


def recordings(path):
    """(channels x steps values, label) per data line of a UEA relational ARFF file."""
    lines = path.read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().lower() == "@data") + 1
    for line in lines[start:]:
        if not line.strip():
            continue
        quoted, label = line.rsplit(",", 1)
        rows = quoted.strip("'").split("\\n")
        yield [[float(v) for v in row.split(",")] for row in rows], label.strip()


def write(split, name):
    rows = [",".join(COLUMNS)]
    step = 0
    for channels, label in recordings(SOURCE / f"BasicMotions_{split}.arff"):
        for t in range(len(channels[0])):
            values = ",".join(f"{c[t]:.6g}" for c in channels)
            rows.append(f"{step / 10:.1f},{values},{label}")
            step += 1
    # mtime 0: the same bytes on every run.
    with open(OUT / name, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as z:
        z.write(("\n".join(rows) + "\n").encode())


if __name__ == "__main__":
    write("TRAIN", "session_train.csv.gz")
    write("TEST", "session_test.csv.gz")
