"""What a run's rows depend on beyond its option values, cheaply: the contents of a file an option names (a judge
template), a local model folder's identity (its small files' contents, its weight files' size and mtime) and the
dtype `auto` resolves to on the device the run uses. The transforms' fingerprints and the launcher's run key add
`config_identity`, so editing a template, replacing a model folder or moving from fp32 to bf16 never reuses stale
rows; the device itself, batch sizes and cache folders stay out.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass
from pathlib import Path

PATH_OPTIONS = ("embedding_model", "reward_model", "prescreen_model", "judge_template")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack")
SMALL_FILE = 16 * 2**20  # other files up to this size are hashed by content (configs, tokenizers)


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else (`./x`, `/x`, `~/x`, `a/b/c`, `a\\b`) is meant as a local
    path. One rule for inputs, model flags and the scorer's "no such folder"."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def path_identity(value) -> str | None:
    """A local file's content hash or a local folder's identity; None for anything else (a Hub id, a name)."""
    if not isinstance(value, str) or not value.strip():
        return None
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
    """Hash of every file's relative path and, for weights, size + mtime (cheap), else its contents."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)):
        stat = file.stat()
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
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


def config_identity(config) -> dict:
    """The identity of the paths a config names and its resolved dtype (empty for a config with neither)."""
    if not is_dataclass(config):
        return {}
    names = {f.name for f in fields(config)}
    out = {name: path_identity(getattr(config, name)) for name in PATH_OPTIONS if name in names}
    out = {name: value for name, value in out.items() if value is not None}
    if "dtype" in names:
        out["dtype"] = resolved_dtype(getattr(config, "dtype"), getattr(config, "device", None))
    return out
