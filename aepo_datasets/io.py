"""Reading the input dataset and writing outputs atomically."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import AEPOInputError

logger = logging.getLogger(__name__)

FILE_TYPES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_input(source: str, split: str = "train", cache_dir: str | None = None, token: str | None = None):
    """A local .csv/.json/.jsonl/.parquet file, a `save_to_disk` folder, or a Hub dataset id; never empty."""
    dataset = _load_any(source, split, cache_dir, token)
    if len(dataset) == 0:
        raise AEPOInputError(f"Input {source!r} has no rows (columns: {dataset.column_names}). "
                             "Check that it is the file you meant.")
    return dataset


def input_kind(source: str) -> str:
    """"folder", "file" or "hub" for an input the loader can read; raises for anything else."""
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in FILE_TYPES:
        if not path.is_file():
            raise AEPOInputError(f"Input file {source!r} does not exist.")
        return "file"
    if path.suffix or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise AEPOInputError(
            f"Cannot read {source!r}: expected a .csv, .json, .jsonl or .parquet file, a save_to_disk folder, "
            "or a Hub dataset id like 'user/name'."
        )
    return "hub"


def _load_any(source: str, split: str, cache_dir: str | None, token: str | None):
    import datasets

    kind = input_kind(source)
    path = Path(source).expanduser()
    if kind == "folder":
        return _load_saved(path, split)
    if kind == "file":
        return _load_file(path, cache_dir)
    return _load_hub(source, split, cache_dir, token, datasets)


def _load_file(path: Path, cache_dir):
    import datasets

    _check_utf8(path)
    _check_has_rows(path)
    try:
        return datasets.load_dataset(FILE_TYPES[path.suffix.lower()], data_files=str(path), split="train",
                                     cache_dir=cache_dir)
    except Exception as err:  # builders wrap parser errors; report the root cause in one line
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise AEPOInputError(f"Could not parse {path}: {type(cause).__name__}: {str(cause).strip()}") from None


def _check_has_rows(path: Path) -> None:
    """The `datasets` builders fail on a file with no rows with a message about splits; say it plainly."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return  # checked after loading: an empty parquet file still loads, with its columns
    with open(path, encoding="utf-8") as handle:
        lines = (line for line in handle if line.strip())
        header = next(lines, None)
        empty = header is None or (suffix == ".csv" and next(lines, None) is None)
    if empty:
        what = "only a header line" if header is not None else "nothing"
        raise AEPOInputError(f"Input file {str(path)!r} has no rows ({what}). Check that it is the file you meant.")


def _check_utf8(path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AEPOInputError(
                    f"{path}: line {number} is not valid UTF-8 (byte {line[err.start]:#x} at column {err.start + 1}). "
                    "Re-save the file as UTF-8."
                ) from None


def _load_saved(path: Path, split: str):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise AEPOInputError(f"{path} is a folder but not one written by save_to_disk.") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise AEPOInputError(f"Split {split!r} not in {path}. Available splits: {list(loaded)}.")
        return loaded[split]
    return loaded


def _load_hub(name, split, cache_dir, token, datasets):
    try:
        return datasets.load_dataset(name, split=split, cache_dir=cache_dir, token=token)
    except (ConnectionError, OSError, ValueError) as err:
        raise AEPOInputError(
            f"Could not load {name!r} from the Hugging Face Hub ({type(err).__name__}: {str(err).splitlines()[0]}). "
            "If the Hub is unreachable, download the dataset elsewhere and pass a local file or folder."
        ) from None


OUTPUT_TYPES = {".csv": "CSV", ".json": "JSON", ".jsonl": "JSON Lines", ".parquet": "Parquet"}  # --output suffixes


def output_paths(output_dir: Path, output: str) -> tuple[Path, Path]:
    """`--output` under `output_dir`: (the table file, the dataset folder beside it, named after the file's stem).

    Relative paths only (`sub/dir/x.csv` is fine): `--cache_dir` says where outputs go.
    """
    name = Path(output)
    if name.is_absolute() or ".." in name.parts:
        raise AEPOInputError(f"--output must be a relative path under {output_dir}/ without '..' (e.g. sub/x.csv), "
                             f"got {output!r}; use --cache_dir to write the outputs elsewhere.")
    if name.suffix.lower() not in OUTPUT_TYPES:
        raise AEPOInputError(f"--output {output!r}: the extension decides the format; use one of "
                             f"{', '.join(OUTPUT_TYPES)}.")
    table = output_dir / name
    return table, table.with_suffix("")


def atomic_write_table(rows: list[dict], columns: list[str], target: Path) -> None:
    """Write `rows` as CSV, JSON (one array of records), JSON Lines or Parquet, as `target`'s suffix says.

    Written to a temporary file in the target folder, then renamed: no partial file under the name.
    """
    writer = _TABLE_WRITERS.get(target.suffix.lower())
    if writer is None:
        raise AEPOInputError(f"Cannot write {target}: the extension must be one of {', '.join(OUTPUT_TYPES)}.")
    _atomic_write(writer, rows, columns, target)


def _atomic_write(writer, rows: list[dict], columns: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle, [{c: row[c] for c in columns} for row in rows], columns)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(handle, rows, columns) -> None:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    text.flush()
    text.detach()


def _write_json(handle, rows, columns) -> None:
    lines = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    handle.write(f"[\n{lines}\n]\n".encode() if rows else b"[]\n")


def _write_jsonl(handle, rows, columns) -> None:
    handle.writelines(f"{json.dumps(row, ensure_ascii=False)}\n".encode() for row in rows)


def _write_parquet(handle, rows, columns) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({c: [row[c] for row in rows] for c in columns}), handle)


_TABLE_WRITERS = {".csv": _write_csv, ".json": _write_json, ".jsonl": _write_jsonl, ".parquet": _write_parquet}


def atomic_save_to_disk(dataset, target: Path, run_info: dict | None = None) -> None:
    """`save_to_disk` into a temporary sibling folder, add run_info.json, then swap it in.

    The swap never leaves a moment where neither the old nor the new output exists: the old folder is renamed
    aside (into the temporary folder), the new one renamed in, and only then is the old one deleted; if the second
    rename fails, the old one is renamed back.
    """
    def fill(folder: Path) -> None:
        save_dataset_dict(dataset, folder)
        if run_info is not None:
            (folder / "run_info.json").write_text(json.dumps(run_info, indent=2, default=str))

    atomic_write_folder(target, fill)


def atomic_write_folder(target: Path, fill) -> None:
    """`fill(folder)` writes a new folder (a temporary sibling of `target`), which then replaces `target` by the same
    swap as `atomic_save_to_disk`: the old or the new folder is complete on disk at every moment."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (tmp / "new").mkdir()
        fill(tmp / "new")
        _swap_in(tmp / "new", target, aside=tmp / "old")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the new folder if it never got in, else the old one


def _swap_in(new: Path, target: Path, aside: Path) -> None:
    if not os.path.lexists(target):
        os.replace(new, target)
        return
    os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_dataset_dict(dataset, folder: Path) -> None:
    """`save_to_disk` that also round-trips empty splits (every prompt skipped or tied): `datasets` writes
    an empty split as zero shards, which `load_from_disk` cannot read back; one shard it can."""
    empty = {name: 1 for name, split in dataset.items() if len(split) == 0}
    dataset.save_to_disk(str(folder), num_shards=empty or None)
