"""What a run's rows depend on beyond its option values, cheaply: the contents of a file an option names (a judge
template), a local model folder's identity (its small files' contents, its weight files' size and mtime) and the
dtype `auto` resolves to on the device the run uses. The transforms' fingerprints and the launcher's run key add
`config_identity`, so editing a template, replacing a model folder or moving from fp32 to bf16 never reuses stale
rows; the device itself, batch sizes and cache folders stay out.

The package's own code counts too: `package_code_hash()` hashes its .py files and shipped weights and configs
(aepo-mini's head), so code changed without a `__version__` bump never reuses rows an older version wrote;
`package_identity()` is `__version__` plus that hash, for run keys. A packaged model named by an option
(`aepo-mini`) is identified by its shipped files' contents (`packaged_model_hash`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import fields, is_dataclass
from pathlib import Path

from ..version import __version__

PATH_OPTIONS = ("embedding_model", "reward_model", "prescreen_model", "judge_template")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack")
SMALL_FILE = 16 * 2**20  # other files up to this size are hashed by content (configs, tokenizers)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CODE_SUFFIXES = (".py", ".json", *WEIGHT_SUFFIXES)  # what changes outputs; docs and model cards do not
PACKAGED_MODELS = {"aepo-mini": "rewards/aepo_mini"}  # option value -> its shipped files, under PACKAGE_ROOT


@functools.lru_cache(maxsize=None)
def package_code_hash() -> str:
    """Hash of the package's own code and shipped weights (every .py, .json and weight file under the package,
    by relative path and contents); computed once per process."""
    return _contents_hash(PACKAGE_ROOT, CODE_SUFFIXES)


def package_identity() -> str:
    """`__version__` and the code hash, e.g. `0.1.0+3f2a...`: what a run key holds in place of the version alone."""
    return f"{__version__}+{package_code_hash()}"


@functools.lru_cache(maxsize=None)
def packaged_model_hash(name: str) -> str | None:
    """Hash of a packaged model's shipped files (aepo-mini's head and config); None for any other name."""
    folder = PACKAGED_MODELS.get(name) if isinstance(name, str) else None
    return _contents_hash(PACKAGE_ROOT / folder, CODE_SUFFIXES) if folder else None


def _contents_hash(root: Path, suffixes: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.suffix in suffixes and p.is_file() and not _hidden(p, root))
    for file in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        if "__pycache__" not in file.parts:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else (`./x`, `/x`, `~/x`, `a/b/c`, `a\\b`) is meant as a local
    path. One rule for inputs, model flags and the scorer's "no such folder"."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def path_identity(value) -> str | None:
    """A local file's content hash, a local folder's identity or a packaged model's (`aepo-mini`); None for
    anything else (a Hub id, a name)."""
    if not isinstance(value, str) or not value.strip():
        return None
    if value in PACKAGED_MODELS:
        return "packaged:" + packaged_model_hash(value)
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        if path.is_dir():
            return "folder:" + folder_identity(path)
    except OSError:
        return None
    return None


def folder_identity(folder: Path) -> str:
    """`files_identity` of every file under `folder` (hidden ones left out)."""
    return files_identity(folder, [p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)])


def files_identity(root: Path, files) -> str:
    """Hash of each file's path relative to `root` and, for weights and large files, size + mtime (cheap), else its
    contents; files that do not exist are left out."""
    digest = hashlib.sha256()
    for file in sorted(f for f in files if f.is_file()):
        stat = file.stat()
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        if file.suffix in WEIGHT_SUFFIXES or stat.st_size > SMALL_FILE:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def resolved_dtype(dtype: str | None, device: str | None) -> str | None:
    """The dtype `auto` becomes on `device` (bf16 on CUDA, fp32 elsewhere; no device: CUDA when available)."""
    if dtype != "auto":
        return dtype
    import torch

    from .devices import resolve_device, resolve_dtype

    # the device named (even one absent here, as in a test), else the one the run would pick
    chosen = torch.device(device) if device and device != "auto" else resolve_device(None)
    return str(resolve_dtype("auto", chosen)).removeprefix("torch.")


def code_identity(entry) -> str | None:
    """The content hash of the source file defining `entry` (a registered class or function) when that file is outside
    the package (a plugin): an edited plugin never reuses rows. None for the package's own entries and for entries no
    file holds (defined in a notebook)."""
    import inspect

    try:
        source = Path(inspect.getsourcefile(entry)).resolve()
        if PACKAGE_ROOT in source.parents:
            return None
        return "plugin:" + hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    except (TypeError, OSError):
        return None


def config_identity(config) -> dict:
    """The identity of the paths a config names and its resolved dtype (empty for a config with neither);
    `transforms.identity.step_identity` adds plugins' code and served models."""
    if not is_dataclass(config):
        return {}
    names = {f.name for f in fields(config)}
    out = {name: path_identity(getattr(config, name)) for name in PATH_OPTIONS if name in names}
    out = {name: value for name, value in out.items() if value is not None}
    if "dtype" in names:
        out["dtype"] = resolved_dtype(getattr(config, "dtype"), getattr(config, "device", None))
    return out
