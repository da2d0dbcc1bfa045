"""Reading the input dataset and writing outputs atomically."""

from __future__ import annotations

import csv
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
    """A local .csv/.json/.jsonl/.parquet file, a `save_to_disk` folder, or a Hub dataset id."""
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        return _load_saved(path, split)
    if path.suffix.lower() in FILE_TYPES:
        if not path.is_file():
            raise AEPOInputError(f"Input file {source!r} does not exist.")
        return _load_file(path, cache_dir)
    if path.suffix or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise AEPOInputError(
            f"Cannot read {source!r}: expected a .csv, .json, .jsonl or .parquet file, a save_to_disk folder, "
            "or a Hub dataset id like 'user/name'."
        )
    return _load_hub(source, split, cache_dir, token, datasets)


def _load_file(path: Path, cache_dir):
    import datasets

    _check_utf8(path)
    try:
        return datasets.load_dataset(FILE_TYPES[path.suffix.lower()], data_files=str(path), split="train",
                                     cache_dir=cache_dir)
    except Exception as err:  # builders wrap parser errors; report the root cause in one line
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise AEPOInputError(f"Could not parse {path}: {type(cause).__name__}: {str(cause).strip()}") from None


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


def atomic_write_csv(rows: list[dict], columns: list[str], target: Path) -> None:
    """Write to a temporary file in the target folder, then rename: no partial file under the name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: row[c] for c in columns})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_to_disk(dataset, target: Path, run_info: dict | None = None) -> None:
    """`save_to_disk` into a temporary sibling folder, add run_info.json, then swap it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dataset.save_to_disk(str(tmp / "data"))
        if run_info is not None:
            (tmp / "data" / "run_info.json").write_text(json.dumps(run_info, indent=2, default=str))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "data", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
