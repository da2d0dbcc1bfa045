"""Options shared by the entry points, and the one place where the research CLI's defaults differ.

`aepo DATASET`, `aepo select` and the launcher all read the same input options (`InputOptions`); each
option has one default, the launcher's and Python's. The `aepo` commands keep the research CLI's defaults
where those differ (`RESEARCH_DEFAULTS`): `--help` shows both. Torch-free, so building a parser is fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import option

RESEARCH = "research CLI flags (same names and defaults)"
INPUT = "input"

# The research CLI's defaults, kept by `aepo DATASET` and `aepo select` so its commands give the same
# results; the launcher and `AEPOTransform(**kwargs)` use the fields' own defaults (every prompt, every
# response column), which is what a job over a whole dataset wants.
RESEARCH_DEFAULTS = {
    "num_responses": 32,  # the research code samples 32 responses per prompt
    "num_instructions": 4,  # the research CLI's quick look at the first 4 prompts
}


@dataclass(frozen=True)
class InputOptions:
    """Which rows of which dataset: the same keys for `aepo`, `aepo select` and the launcher."""

    split: str = option("train", "split of a Hub dataset or saved DatasetDict", group=INPUT)
    subset: str | None = option(None, "configuration (subset) of a Hub dataset: load_dataset's `name`",
                                metavar="NAME", group=INPUT)
    num_instructions: int | None = option(None, "use the first N prompts, or `all`", group=INPUT)
    access_token: str | None = option(None, "Hugging Face token (or HF_TOKEN, or `hf auth login`)", group=INPUT)
