"""One transform per step; each is a `Dataset.map(..., batched=True)` callable."""

from .embed_responses import EmbedConfig, EmbedResponses
from .pair_responses import PairConfig, PairResponses
from .prescreen_responses import PrescreenConfig, PrescreenResponses
from .score_responses import ScoreConfig, ScoreResponses
from .select_responses import SelectConfig, SelectResponses
from .to_response_lists import ResponseListsConfig, ToResponseLists, group_long_responses

__all__ = [
    "EmbedConfig", "EmbedResponses", "PairConfig", "PairResponses",
    "PrescreenConfig", "PrescreenResponses", "ResponseListsConfig", "ScoreConfig", "ScoreResponses", "SelectConfig",
    "SelectResponses", "ToResponseLists", "group_long_responses",
]
