"""Reading the input dataset and writing outputs atomically."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import lzma
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from ..errors import AEPOInputError
from ..models.identity import looks_like_path

logger = logging.getLogger(__name__)

FILE_TYPES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}  # text formats only; `datasets` decompresses them
FILE_LIKE = {".txt", ".tsv", ".xlsx", ".xls", ".arrow", ".zst", ".zip", ".tar", ".pkl", *FILE_TYPES, *COMPRESSIONS}
GLOB_CHARACTERS = set("*?[")
ACCEPTED = ("a .csv, .json, .jsonl or .parquet file (.csv/.json/.jsonl may end in .gz, .bz2 or .xz), a glob of such "
            "files, a save_to_disk folder, or a Hub dataset id ('imdb', 'user/name')")


def load_input(source: str, split: str = "train", cache_dir: str | None = None, token: str | None = None,
               subset: str | None = None, maps_in_memory: bool = False):
    """A local file (compressed or not), a glob of shards, a `save_to_disk` folder, or a Hub dataset id (with
    `subset`, its configuration); never empty. A `save_to_disk` folder on a read-only mount is read into memory,
    as `datasets` would write its maps' cache files beside it, unless `maps_in_memory` (the launcher's maps write
    none)."""
    dataset = _load_any(source, split, cache_dir, token, subset, maps_in_memory)
    if len(dataset) == 0:
        raise AEPOInputError(f"Input {source!r} has no rows (columns: {dataset.column_names}). "
                             "Check that it is the file you meant.")
    return dataset


def input_source(dataset: str, split: str, subset: str | None) -> dict:
    """What run_info.json records about the input."""
    return {"dataset": dataset, "split": split, "subset": subset}


def file_type(path: Path) -> str | None:
    """The `datasets` builder for `path` by its suffixes ("json" for data.jsonl.gz), or None."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        inner = suffixes[0] if len(suffixes) == 2 else ""
        return FILE_TYPES[inner] if inner in FILE_TYPES and inner != ".parquet" else None
    return FILE_TYPES.get(suffixes[-1]) if suffixes else None


def input_kind(source: str) -> str:
    """"folder", "file", "glob" or "hub" for an input the loader can read; raises for anything else."""
    path = Path(source).expanduser()
    if GLOB_CHARACTERS & set(source):
        glob_files(source)
        return "glob"
    if path.is_dir():
        return "folder"
    if os.path.lexists(path):
        _check_regular_file(path, source)
        return "file"
    if _is_hub_id(source):
        return "hub"
    if file_type(path) is not None or path.suffix.lower() in FILE_LIKE:
        raise AEPOInputError(f"Input file {source!r} does not exist.")
    if looks_like_path(source):
        raise AEPOInputError(f"Input {source!r} does not exist (no such file or folder).")
    raise AEPOInputError(f"Cannot read {source!r}: expected {ACCEPTED}.")


def _check_regular_file(path: Path, source: str) -> None:
    if not path.exists():
        raise AEPOInputError(f"Input {source!r} is a broken symbolic link (it points to {os.readlink(path)!r}).")
    if not path.is_file():
        raise AEPOInputError(f"Input {source!r} is not a regular file (a pipe or device?); save the data to a "
                             "file first.")
    if file_type(path) is None:
        raise AEPOInputError(f"Cannot read {source!r}: expected {ACCEPTED}.")


def _is_hub_id(source: str) -> bool:
    """A valid Hub dataset id ('imdb', 'teknium/OpenHermes-2.5') that does not look like a local file."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if looks_like_path(source) or Path(source).suffix.lower() in FILE_LIKE:
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def glob_files(pattern: str) -> list[Path]:
    """The files a glob matches, sorted by name (shards load in order); all of one format."""
    import glob

    paths = [Path(p) for p in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)) if not Path(p).is_dir()]
    if not paths:
        raise AEPOInputError(f"Input glob {pattern!r} matches no files. Check the pattern (quote it, so the shell "
                             "does not expand it).")
    kinds = {p.name: file_type(p) for p in paths}
    unknown = [name for name, kind in kinds.items() if kind is None]
    if unknown:
        raise AEPOInputError(f"Input glob {pattern!r} matches files that cannot be read: {unknown[:3]} (expected "
                             f"{ACCEPTED}).")
    if len(set(kinds.values())) > 1:
        found = sorted(set(kinds.values()))
        raise AEPOInputError(f"Input glob {pattern!r} mixes formats ({', '.join(found)}): match one format, e.g. "
                             f"'*.{'jsonl' if 'json' in found else found[0]}'.")
    return paths


def _load_any(source: str, split: str, cache_dir: str | None, token: str | None, subset: str | None = None,
              maps_in_memory: bool = False):
    import datasets

    kind = input_kind(source)
    path = Path(source).expanduser()
    if subset is not None and kind != "hub":
        raise AEPOInputError(f"--subset {subset!r} names a configuration of a Hub dataset; {source!r} is a local "
                             f"{kind}. Leave --subset out.")
    if kind == "folder":
        return _load_saved(path, split, in_memory=not maps_in_memory and not os.access(path, os.W_OK))
    if kind in ("file", "glob") and split != "train":
        raise AEPOInputError(f"--split {split!r}: {source!r} is a local {kind}, which has one split, 'train'. Leave "
                             "--split out, or name the file that holds that split.")
    if kind in ("file", "glob"):
        return _load_files(glob_files(source) if kind == "glob" else [path], cache_dir)
    return _load_hub(source, split, cache_dir, token, datasets, subset)


def _load_files(paths: list[Path], cache_dir):
    import datasets

    for path in paths:
        _check_readable(path)
    if len(paths) == 1:
        _check_has_rows(paths[0])
    kind = file_type(paths[0])
    # a response or prompt that reads "NA", "None" or "null" is text: only an empty cell is missing
    text_as_is = {"keep_default_na": False, "na_values": [""]} if kind == "csv" else {}
    try:
        return datasets.load_dataset(kind, data_files=[str(p) for p in paths], split="train", cache_dir=cache_dir,
                                     **text_as_is)
    except Exception as err:  # builders wrap parser errors; report the root cause in one line
        for path in paths:
            _check_json_lines(path)  # names the first bad line (pyarrow counts rows from 0, within a block)
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        where = paths[0] if len(paths) == 1 else f"{len(paths)} files ({paths[0]} ...)"
        raise AEPOInputError(f"Could not parse {where}: {type(cause).__name__}: {str(cause).strip()}") from None


def _check_json_lines(path: Path) -> None:
    """A JSON Lines file whose line is not a JSON object: one line naming it (1-based), else nothing."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if ".jsonl" not in suffixes:
        return
    with open_text(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise AEPOInputError(f"{path}: line {number} is not valid JSON ({err.msg} at column {err.colno}). "
                                     "Fix or remove that line.") from None
            if not isinstance(row, dict):
                raise AEPOInputError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object of "
                                     "columns ({\"prompt\": ..., \"response_0\": ...}).")


def _check_readable(path: Path) -> None:
    """UTF-8, and for CSV every row as wide as the header; an unreadable file is one line."""
    try:
        if file_type(path) == "csv":
            _check_csv(path)
        else:
            _check_utf8(path)
    except PermissionError as err:
        raise AEPOInputError(f"Cannot read input file {str(path)!r}: {err.strerror or err}. Check its permissions, "
                             "or copy it somewhere readable.") from None
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:  # gzip/bz2/xz: cut short or not compressed
        raise AEPOInputError(f"Cannot read input file {str(path)!r}: {getattr(err, 'strerror', None) or err}. It may "
                             "be cut short or corrupt: download or compress it again.") from None


def open_text(path: Path, mode: str = "rb"):
    """`path` opened for reading, decompressed when its suffix says so."""
    import bz2
    import gzip
    import lzma

    opener = {"gzip": gzip.open, "bz2": bz2.open, "lzma": lzma.open}.get(COMPRESSIONS.get(path.suffix.lower()), open)
    return opener(path, mode, **({"encoding": "utf-8", "newline": ""} if "t" in mode else {}))


def _check_has_rows(path: Path) -> None:
    """The `datasets` builders fail on a file with no rows with a message about splits; say it plainly."""
    if file_type(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception:  # not parquet: the loader names the cause
            return
        if rows == 0:
            raise AEPOInputError(f"Input file {str(path)!r} has no rows (a parquet file with columns only). Check "
                                 "that it is the file you meant.")
        return
    with open_text(path, "rt") as handle:
        start = handle.read(4096)
        if file_type(path) == "json" and "".join(start.split()).startswith("[]"):
            raise AEPOInputError(f"Input file {str(path)!r} has no rows (an empty JSON list). Check that it is the "
                                 "file you meant.")
    with open_text(path, "rt") as handle:
        lines = (line for line in handle if line.strip())
        header = next(lines, None)
        empty = header is None or (file_type(path) == "csv" and next(lines, None) is None)
    if empty:
        what = "only a header line" if header is not None else "nothing"
        raise AEPOInputError(f"Input file {str(path)!r} has no rows ({what}). Check that it is the file you meant.")


CSV_BLOCK_BYTES = 16 << 20  # big enough for a row of 128 long responses; a longer row falls back to the scan
UTF8_BLOCK_BYTES = 1 << 20  # decoding 16 MB blocks was 2.5x slower (the big strings they decode to)


def _check_csv(path: Path) -> None:
    """UTF-8, and a row with fewer (or more) fields than the header would be read with its cells shifted or missing:
    refuse it, naming its line. pyarrow's C++ parser answers for a good file (its cells are checked as UTF-8 as
    they become strings); only when it objects do the slow scans (Python's decoder and csv module, the
    authorities) run, to name the line, or to let a file pass that only pyarrow refuses."""
    if not _csv_rows_fit_the_header(path):
        _scan_utf8_lines(path)
        _scan_csv_rows(path)
    _check_csv_header(path)


def _check_csv_header(path: Path) -> None:
    """A blank or repeated column name would be renamed by the reader (`Unnamed: 4`, `prompt.1`) and then taken
    for a response: refuse it, naming it."""
    with open_text(path, "rt") as handle:
        header = next((row for row in csv.reader(handle) if row), [])
    names = [cell.lstrip("\ufeff").strip() for cell in header]
    blank = [i + 1 for i, name in enumerate(names) if not name and i > 0]  # column 1: pandas' index, numbers
    if blank:
        raise AEPOInputError(f"{path}: header column {blank[0]} has no name (a trailing comma?). Name it, or remove "
                             "the column.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AEPOInputError(f"{path}: the header names column {repeated[0]!r} {names.count(repeated[0])} times. "
                             "Give each column its own name.")


def _csv_rows_fit_the_header(path: Path) -> bool:
    """True when pyarrow reads every row as wide as the header, as valid UTF-8, and no cell as long as the csv
    module's field limit. On every file it accepts it reads the same cells as the csv module (tests/
    test_input_checks.py compares them on random files), so True means the scan would pass too."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    width = _csv_header_width(path)
    if width is None or _bom_before_a_quote_or_line_end(path):
        return False
    columns = [f"f{i}" for i in range(width)]  # the header is read as a row like the others: no names to depend on
    options = {"read_options": pa_csv.ReadOptions(column_names=columns, block_size=CSV_BLOCK_BYTES),
               "parse_options": pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
               "convert_options": pa_csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))}
    try:
        with open_text(path) as handle:
            source = str(path) if COMPRESSIONS.get(path.suffix.lower()) is None else handle
            return all(_cells_within_field_limit(batch) for batch in pa_csv.open_csv(source, **options))
    except pa.ArrowException:  # a wrong-width row, invalid UTF-8, a row over the block size, ...
        return False


def _csv_header_width(path: Path) -> int | None:
    """Fields in the first non-empty row as the csv module reads it; None when it cannot read one."""
    try:
        with open_text(path, "rt") as handle:
            return next((len(row) for row in csv.reader(handle) if row), None)
    except (csv.Error, UnicodeDecodeError):
        return None


def _bom_before_a_quote_or_line_end(path: Path) -> bool:
    """pyarrow drops a leading BOM; the csv module keeps it as the first cell's first character, so a quote after it
    is a plain character and a line end after it ends a non-empty row: there the two read different cells."""
    with open_text(path) as handle:
        start = handle.read(4)
    return start.startswith(codecs.BOM_UTF8) and start[3:] in (b"", b'"', b"\r", b"\n")


def _cells_within_field_limit(batch) -> bool:
    """The csv module refuses a cell over `csv.field_size_limit()` characters; bytes bound characters from above,
    so characters are only counted in a column whose longest cell has too many bytes."""
    import pyarrow.compute as pc

    limit = csv.field_size_limit() - 1  # pyarrow drops a leading BOM, which the csv module keeps in the first cell
    return all((pc.max(pc.binary_length(column)).as_py() or 0) <= limit
               or (pc.max(pc.utf8_length(column)).as_py() or 0) <= limit for column in batch.columns)


def _scan_csv_rows(path: Path) -> None:
    """Every physical line counts, blank ones included; blank lines are skipped, as the reader does."""
    with open_text(path, "rt") as handle:
        reader = csv.reader(handle)
        header, start = None, 1
        try:
            for row in reader:
                if row and header is None:
                    header = row
                elif row and len(row) != len(header):
                    raise AEPOInputError(
                        f"{path}: line {start} has {len(row)} field{'s' * (len(row) != 1)} but the header has "
                        f"{len(header)} ({', '.join(header[:6])}{', ...' if len(header) > 6 else ''}). Fix the "
                        "row (quote cells that hold commas, close every quote) or re-export the file.")
                start = reader.line_num + 1
        except csv.Error as err:
            raise AEPOInputError(f"{path}: line {reader.line_num} is not valid CSV ({err}).") from None


def _check_utf8(path: Path) -> None:
    """Decoded in large blocks (C speed); only a file that fails is scanned line by line, to name the line."""
    if file_type(path) == "parquet":
        return
    if not _decodes_as_utf8(path):
        _scan_utf8_lines(path)


def _decodes_as_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()  # a character split across two blocks is not an error
    with open_text(path) as handle:
        try:
            while block := handle.read(UTF8_BLOCK_BYTES):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _scan_utf8_lines(path: Path) -> None:
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AEPOInputError(
                    f"{path}: line {number} is not valid UTF-8 (byte {line[err.start]:#x} at column {err.start + 1}). "
                    "Re-save the file as UTF-8."
                ) from None


def _load_saved(path: Path, split: str, in_memory: bool = False):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path), keep_in_memory=in_memory)
    except FileNotFoundError:
        raise AEPOInputError(f"{path} is a folder but not one written by save_to_disk.") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise AEPOInputError(f"Split {split!r} not in {path}. Available splits: {list(loaded)}.")
        loaded = loaded[split]
    elif split != "train":
        raise AEPOInputError(f"--split {split!r}: {path} holds one dataset, not a DatasetDict with splits. Leave "
                             "--split out.")
    return with_folder_fingerprint(loaded, path)


def with_folder_fingerprint(dataset, folder: Path):
    """`dataset` fingerprinted by its folder's files too: `save_to_disk` stores the fingerprint of the steps that made
    the rows, not of the rows, so a folder written again with other rows (new samples from `stage=generate`) would
    otherwise reuse the cached maps and launcher chunks of the old ones."""
    from datasets.fingerprint import Hasher

    dataset._fingerprint = Hasher.hash([dataset._fingerprint, saved_files_identity(folder)])
    return dataset


def saved_files_identity(folder: Path) -> str:
    """`files_identity` of what `save_to_disk` wrote under `folder` (each `state.json`, its `dataset_info.json` and
    the data files it lists); never the `cache-*.arrow` files that maps leave beside them (a cached run would
    otherwise change the next run's fingerprint)."""
    from ..models.identity import files_identity

    files = []
    for state in folder.rglob("state.json"):
        files += [state, state.with_name("dataset_info.json")]
        files += [state.with_name(f["filename"]) for f in json.loads(state.read_text()).get("_data_files", [])]
    return files_identity(folder, files)


def _load_hub(name, split, cache_dir, token, datasets, subset=None):
    try:
        return datasets.load_dataset(name, subset, split=split, cache_dir=cache_dir, token=token)
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


def write_table_and_folder(rows: list[dict], columns: list[str], table: Path, dataset, folder: Path,
                           run_info: dict | None = None) -> None:
    """The table and the DatasetDict folder (+ run_info.json) are replaced together or not at all.

    Both are written to temporary names first (where a full disk or a read-only folder fails, nothing is
    replaced); then the folder is swapped in and the table renamed in; if the table's rename fails, the old folder
    is swapped back. An OSError becomes one line naming the output and saying the earlier outputs are intact.
    """
    writer = _TABLE_WRITERS.get(table.suffix.lower())
    if writer is None:
        raise AEPOInputError(f"Cannot write {table}: the extension must be one of {', '.join(OUTPUT_TYPES)}.")
    work = None
    try:
        table.parent.mkdir(parents=True, exist_ok=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        new_table = work / f"new{table.suffix}" if table.parent == folder.parent else None
        with _temporary_file(table, new_table) as tmp_table:
            _write_file(writer, rows, columns, tmp_table)
            (work / "new").mkdir()
            save_dataset_dict(dataset, work / "new")
            if run_info is not None:
                (work / "new" / "run_info.json").write_text(json.dumps(run_info, indent=2, default=str))
            _swap_in(work / "new", folder, aside=work / "old")
            try:
                os.replace(tmp_table, table)
            except BaseException:
                _swap_back(folder, work)
                raise
    except OSError as err:
        raise AEPOInputError(f"Could not write the outputs {str(table)!r} and {str(folder)!r}: "
                             f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}. Nothing was "
                             "replaced: earlier outputs, if any, are as they were. Free space or choose another "
                             "--cache_dir/--output.") from None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _swap_back(folder: Path, work: Path) -> None:
    """Undo `_swap_in`: the new folder out, the old one (if there was one) back in."""
    os.replace(folder, work / "new")
    if os.path.lexists(work / "old"):
        os.replace(work / "old", folder)


class _temporary_file:
    """A temporary path for `target` in the same folder (so the rename is atomic), removed unless renamed."""

    def __init__(self, target: Path, path: Path | None = None):
        self.target, self.path = target, path

    def __enter__(self) -> Path:
        if self.path is None:
            fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
            os.close(fd)
            self.path = Path(name)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _write_file(writer, rows: list[dict], columns: list[str], path: Path) -> None:
    with open(path, "wb") as handle:
        writer(handle, [{c: row[c] for c in columns} for row in rows], columns)
    os.chmod(path, 0o666 & ~_umask())


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
