"""AEPO as Hugging Face `datasets` transforms: N responses per prompt -> preference pairs with k annotations."""

from .version import __version__  # noqa: E402
from .errors import AEPOInputError  # noqa: E402
from .models.forking import install as _install_fork_hook  # noqa: E402
from .config import AEPOConfig  # noqa: E402
from .pipeline.chain import AEPOTransform  # noqa: E402
from .transforms import (  # noqa: E402
    EmbedResponses,
    PairResponses,
    PrescreenResponses,
    ScoreResponses,
    SelectResponses,
    ToResponseLists,
    group_long_responses,
)

_install_fork_hook()  # map(num_proc=n) after torch ran here must not hang: see models/forking.py

__all__ = [
    "AEPOConfig", "AEPOInputError", "AEPOTransform", "EmbedResponses", "PairResponses", "PrescreenResponses", "ScoreResponses",
    "SelectResponses", "ToResponseLists", "group_long_responses", "__version__",
]
