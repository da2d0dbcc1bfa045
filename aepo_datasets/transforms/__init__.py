"""One transform per step; each is a `Dataset.map(..., batched=True)` callable.

The names below are imported on first use (module `__getattr__`), so that importing one step module, or the
configuration, does not load every step's model library."""

from __future__ import annotations

from ..registry import lazy_exports

_EXPORTS = {
    "EmbedConfig": "embed_responses", "EmbedResponses": "embed_responses",
    "PairConfig": "pair_responses", "PairResponses": "pair_responses",
    "PrescreenConfig": "prescreen_responses", "PrescreenResponses": "prescreen_responses",
    "ScoreConfig": "score_responses", "ScoreResponses": "score_responses",
    "SelectConfig": "select_responses", "SelectResponses": "select_responses",
    "ResponseListsConfig": "to_response_lists", "ToResponseLists": "to_response_lists",
    "group_long_responses": "to_response_lists",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
