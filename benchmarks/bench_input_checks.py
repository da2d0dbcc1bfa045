#!/usr/bin/env python
"""The input checks before `load_dataset` (issue 18): the line-by-line scans against the fast path.

    python benchmarks/bench_input_checks.py [--mb 150] [--data /work/shared/data/alpaca_eval_n128.parquet]

Writes a CSV and a JSON Lines file of about `--mb` MB each from the rows of `--data` (repeated until the size is
reached) in a temporary folder, then times, per file: the old checks (`_scan_utf8_lines`, and for the CSV
`_scan_csv_rows`: every line through Python and the csv module), the new checks (`_check_readable`: for JSON
Lines, UTF-8 decoded in 1 MB blocks; for the CSV, pyarrow's C++ parser; the scans only run when these object) and
`datasets.load_dataset` itself (cache in the temporary folder). Each file is read once before timing, so all
timings read it from the page cache. Prints one JSON line per file, with the 1-minute load average (and, for the
CSV, whether pyarrow accepted it, i.e. the scans did not run).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from aepo_datasets.io.files import (_check_readable, _csv_rows_fit_the_header, _scan_csv_rows,
                                    _scan_utf8_lines)

DATA = Path("/work/shared/data/alpaca_eval_n128.parquet")


def write_inputs(data: Path, folder: Path, megabytes: int) -> list[Path]:
    import pandas as pd

    rows = pd.read_parquet(data)
    one_csv, one_jsonl = rows.to_csv(index=False), rows.to_json(orient="records", lines=True, force_ascii=False)
    header, body = one_csv.split("\n", 1)  # pandas quotes cells with newlines, so the header is the first line
    copies = max(1, round(megabytes * 2**20 / len(body.encode())))
    (folder / "input.csv").write_text(header + "\n" + body * copies, encoding="utf-8")
    (folder / "input.jsonl").write_text(one_jsonl * copies, encoding="utf-8")
    return [folder / "input.csv", folder / "input.jsonl"]


def seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return round(time.perf_counter() - start, 2)


def old_checks(path: Path) -> None:
    _scan_utf8_lines(path)
    if path.suffix == ".csv":
        _scan_csv_rows(path)


def load(path: Path, cache: Path) -> None:
    import datasets

    datasets.load_dataset("csv" if path.suffix == ".csv" else "json", data_files=str(path), split="train",
                          cache_dir=str(cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_inputs(args.data, Path(tmp), args.mb):
            path.read_bytes()  # into the page cache, so the first timing is not the only one reading the disk
            result = {"file": path.name, "mb": round(path.stat().st_size / 2**20),
                      "old_check_s": seconds(old_checks, path), "new_check_s": seconds(_check_readable, path),
                      "load_s": seconds(load, path, Path(tmp) / path.stem), "load_average_1min": os.getloadavg()[0]}
            if path.suffix == ".csv":  # else the new check was the scan after all
                result["fast_path_accepted"] = _csv_rows_fit_the_header(path)
            result["speedup"] = round(result["old_check_s"] / max(result["new_check_s"], 0.01), 1)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
