"""What a step's rows depend on beyond its options (`models.identity.config_identity`: files, model folders,
dtype), plus what only this layer can see: the code of a plugin's registered choice (a strategy, annotator or
similarity measure defined outside the package) and the model a `server:URL` annotator serves now. The steps'
fingerprints (`Transform.__getstate__`) and the launcher's run key hold it, so an edited plugin or a served model
listed under another name reuses no rows."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from ..models.identity import code_identity, config_identity


def registries() -> dict:
    """option -> the registry its value names an entry of."""
    from ..rewards import REWARD_MODELS
    from ..selection.base import STRATEGIES
    from ..selection.similarity import LEXICAL

    return {"selection": STRATEGIES, "similarity_measure": LEXICAL, "reward_model": REWARD_MODELS,
            "prescreen_model": REWARD_MODELS}


def plugin_identities(config) -> dict:
    """`{"<option> code": hash}` for each option naming a registered entry defined outside the package."""
    names = {f.name for f in fields(config)}
    out = {}
    for option, registry in registries().items():
        value = getattr(config, option) if option in names else None
        if isinstance(value, str) and value in registry:
            identity = code_identity(registry.get(value))
            if identity is not None:
                out[f"{option} code"] = identity
    return out


def served_identity(config) -> str | None:
    """The model a `server:URL` annotator serves now, by the name it lists (the preflight's answer, else one GET
    without retries); None when no server scores. A model swapped behind the same served name is not seen."""
    from ..rewards.server import ServerScorer, is_server

    reward_model = getattr(config, "reward_model", None)
    if not is_server(reward_model) or getattr(config, "reward_column", None):
        return None
    scorer = ServerScorer(reward_model, timeout=getattr(config, "request_timeout", None), max_retries=0)
    return "served:" + scorer.model_id


def step_identity(config) -> dict:
    """`config_identity`, the plugins' code and the served model (empty for a config with none of them)."""
    if not is_dataclass(config):
        return {}
    served = served_identity(config)
    return {**config_identity(config), **plugin_identities(config), **({"served": served} if served else {})}
