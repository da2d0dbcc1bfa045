"""What every transform shares: a frozen config, lazy models, a tiny pickled state.

`datasets` fingerprints a map by hashing the function with dill; a transform that held a loaded model
would have its weights copied and hashed on every `map` call. So the pickled state is only the config
and VERSION (bump VERSION whenever a transform's output changes for the same config), with the package's version
and the hash of its code and shipped weights (`models.identity.package_code_hash`), so rows cached by other code
are never reused.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import asdict, replace
from typing import Any, ClassVar

from ..version import __version__


class Transform:
    """Callable `(batch, rank=None) -> batch` for `Dataset.map(..., batched=True)`.

    `stats` holds what the step did (`self.count("annotations", n)`); the pipeline adds every step's counts to
    the run's report (`report.run_report`: a name of one of its fields adds to that field, `field/key` to a key
    of a dict field, any other name to its `counts`). The counts are not pickled: they change no output."""

    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type]
    # True for a step whose output rows are not its input rows (pairing drops skipped prompts): `ds.map(step,
    # batched=True)` then returns only the step's columns, with or without `remove_columns` (`consume_inputs`)
    REPLACES_ROWS: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        """Every transform's `__call__` first checks that it got a batch (`map(..., batched=True)`), not one row."""
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None:
            cls.__call__ = _checking_batched(call)

    def __init__(self, config=None, **options):
        if config is not None and options:
            raise TypeError("pass either a config or keyword options, not both")
        self.config = config if config is not None else self.Config(**options)
        self.stats: Counter = Counter()
        self._reset()

    def count(self, name: str, amount: int = 1) -> None:
        """Count `amount` of `name` in this step's `stats`."""
        self.stats[name] += amount

    def _reset(self) -> None:
        """Drop loaded models and counters (called on init and after unpickling)."""

    def __getstate__(self) -> dict[str, Any]:
        # the device does not change the rows: keep it out of the fingerprint (a worker process
        # unpickled from this state picks its device from its rank). Batch sizes stay in: a worker rebuilds its
        # config from this state (the launcher's run key leaves them out). What the device changes (the dtype `auto` resolves to), the contents of files and model folders the
        # config names are in `identity` (ignored on unpickling)
        from ..models.identity import package_code_hash
        from .identity import step_identity

        config = replace(self.config, device=None) if hasattr(self.config, "device") else self.config
        return {"config": config, "version": self.VERSION, "package": __version__, "code": package_code_hash(),
                "identity": step_identity(self.config)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self.stats = Counter()
        self._reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({asdict(self.config)})"

    def new_features(self) -> dict:
        """The types of the columns this step adds (declared, so that no batch can change a column's type:
        a first batch of skipped prompts would otherwise type a list column as a list of nulls)."""
        return {}

    def features_after(self, features):
        """The features of `ds.map(self, batched=True, features=step.features_after(ds.features))`: the input's
        columns and this step's. Passing them makes the output's types independent of which rows a batch holds."""
        from datasets import Features

        return Features({**features, **self.new_features()})

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        raise NotImplementedError


def _checking_batched(call):
    @functools.wraps(call)
    def checked(self, batch, rank=None):
        check_batched(batch, type(self).__name__)
        out = call(self, batch, rank)
        if self.REPLACES_ROWS:
            consume_inputs(batch)
        return out

    return checked


def consume_inputs(batch) -> None:
    """Empty the batch `datasets` passed in, so that its columns are not merged into the output: a step whose
    rows are not its input's (one per kept prompt) works under `ds.map(step, batched=True)` without
    `remove_columns`, instead of failing with `ArrowInvalid: Column ... expected length 3 but got length 2` when
    a prompt is skipped. `datasets` merges what is left of the batch it passed (the dict itself when the dataset
    has no format); a plain dict built by a caller is left alone."""
    if type(batch).__name__ == "LazyBatch":
        for key in list(batch.keys()):
            del batch[key]


def check_batched(batch, step: str) -> None:
    """A transform works on a batch (a dict of column lists); `ds.map(transform)` without `batched=True` passes one
    row, whose text values would be read as lists of characters. Say so in one line."""
    from ..errors import AEPOInputError

    one_row = type(batch).__name__ == "LazyRow" or any(
        value is None or isinstance(value, (str, bytes, dict, int, float)) for value in batch.values())
    if one_row:
        raise AEPOInputError(f"{step} got one row, not a batch: call ds.map(transform, batched=True) "
                             "(each value must be a list of rows).")


def kept_rows(batch: dict[str, list]) -> list[int]:
    """Rows not marked as skipped by an earlier step."""
    reasons = batch.get("skip_reason") or [""] * len(next(iter(batch.values()), []))
    return [i for i, reason in enumerate(reasons) if not reason]


def require_columns(batch: dict[str, list], columns: list[str], step: str) -> None:
    from ..errors import AEPOInputError

    missing = [c for c in columns if c not in batch]
    if missing:
        raise AEPOInputError(
            f"{step} needs column(s) {missing} from the earlier steps. Current columns: {list(batch)}."
        )
