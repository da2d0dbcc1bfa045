"""AEPO as Hugging Face `datasets` transforms: N responses per prompt -> preference pairs with k annotations.

The transforms are imported on first use (module `__getattr__`): `from aepo_datasets import AEPOTransform` works
as before, while `import aepo_datasets.io.labels` or `aepo --help` do not load torch."""

from .version import __version__  # noqa: E402
from .errors import AEPOInputError  # noqa: E402
from .models.forking import install as _install_fork_hook  # noqa: E402
from .registry import lazy_exports  # noqa: E402

_install_fork_hook()  # map(num_proc=n) after torch ran here must not hang: see models/forking.py

_EXPORTS = {
    "AEPOConfig": "config", "AEPOTransform": "pipeline.chain", "EmbedResponses": "transforms",
    "PairResponses": "transforms", "PrescreenResponses": "transforms", "ScoreResponses": "transforms",
    "SelectResponses": "transforms", "ToResponseLists": "transforms", "group_long_responses": "transforms",
}

__all__ = [*_EXPORTS, "AEPOInputError", "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
