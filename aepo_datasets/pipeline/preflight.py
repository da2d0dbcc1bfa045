"""Checks that run before the first expensive stage, so a mistake ends a run in seconds, not hours.

Models (a local folder must exist and hold a config; a Hub id must be cached or answer one request,
never a retry loop), endpoints (judge:MODEL's --api_base, server:URL: one GET of their model list, no retries:
refused, unresolvable, 401/403/404 or a model not listed is one line), and folders the run will write to (they
must be creatable and writable).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AEPOInputError
from ..models.identity import looks_like_path

HUB_TIMEOUT_S = 10
PREFLIGHT_FORWARD_MAX_BYTES = 2 * 1024**3  # local reward models up to this size are loaded before embedding


def check_writable_dir(folder: Path | str, flag: str) -> None:
    """Create `folder` if needed and prove a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".aepo-write-check-"):
            pass
    except OSError as err:
        raise AEPOInputError(f"{flag} {str(folder)!r} is not a writable folder ({err.strerror or err}). "
                             "Choose a folder you can write to.") from None


def check_model(name: str, flag: str, *, revision: str | None = None, token: str | None = None,
                classifier: bool = False, reward_output: str | None = None, trust_remote_code: bool = False) -> None:
    """A local model folder or a Hub model id that can be loaded without waiting on a dead network; a
    classifier's `--reward_output` is checked against the labels it has (the forward pass that checks it against
    the model's output is `loaded_reward_scorer`'s)."""
    path = Path(name).expanduser()
    if path.exists():
        _check_local_model(path, flag, classifier, reward_output, trust_remote_code)
    elif looks_like_path(name):
        raise AEPOInputError(f"{flag} {name!r}: no such folder. Pass an existing local path or a Hub id.")
    else:
        if classifier:
            from ..rewards import check_not_a_typo

            check_not_a_typo(name, flag)
        _check_hub_id(name, flag)
        check_hub_repo(name, flag, "model", revision=revision, token=token)


def _check_local_model(path: Path, flag: str, classifier: bool, reward_output: str | None = None,
                       trust_remote_code: bool = False) -> None:
    if not (path / "config.json").is_file():
        raise AEPOInputError(f"{flag} {str(path)!r} has no config.json: it is not a saved model folder "
                             "(save one with save_pretrained).")
    if not classifier:
        return
    from transformers import AutoConfig

    from ..rewards.heads import RewardOutput

    output = RewardOutput.parse(reward_output)
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise AEPOInputError(f"{flag} {str(path)!r} is a {architectures[0]}, not a sequence-classification "
                             "reward model.")
    output.check_labels(getattr(config, "num_labels", 1), str(path))


def weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))


def wants_forward_check(config) -> bool:
    """A local reward model of at most 2 GiB with `--reward_output` or `--trust_remote_code`: its output is read
    once before embedding. Larger models and Hub ids are checked by the same forward pass when the scorer
    first loads them."""
    path = Path(config.reward_model).expanduser()
    custom = config.reward_output is not None or config.trust_remote_code
    return custom and path.is_dir() and weights_bytes(path) <= PREFLIGHT_FORWARD_MAX_BYTES


def loaded_reward_scorer(config):
    """The pipeline's own scorer for `config`'s reward model (its device, its dtype), loaded now: loading reads
    `--reward_output` from one forward pass, and the pipeline then scores with this scorer instead of loading
    the model again."""
    from ..transforms.score_responses import ScoreResponses

    return ScoreResponses(config.score_config()).scorer().load()


def _check_hub_id(name: str, flag: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise AEPOInputError(f"{flag} {name!r} is neither a local folder nor a valid Hub id (owner/name, letters, "
                             "digits, '-', '_' and '.').") from None


def check_hub_repo(repo_id: str, flag: str, repo_type: str = "model", *, revision: str | None = None,
                   token: str | None = None) -> None:
    """Cached locally, or one request to the Hub answers; offline mode (HF_HUB_OFFLINE) is respected."""
    from huggingface_hub import constants, try_to_load_from_cache

    filename = "config.json" if repo_type == "model" else "README.md"
    if isinstance(try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise AEPOInputError(f"{flag} {repo_id!r} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set and it is "
                             "not in the local cache: pass a local path, or download it first.")
    ask_hub_once(repo_id, flag, repo_type, revision, token)


def ask_hub_once(repo_id: str, flag: str, repo_type: str = "model", revision: str | None = None,
                 token: str | None = None) -> None:
    """One request, a short timeout, no retries: a dead network is reported in seconds."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, token=token, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise AEPOInputError(f"{flag} {repo_id!r} is gated: accept its terms on the Hub and pass a token "
                             "(--access_token, HF_TOKEN or `hf auth login`).") from None
    except RepositoryNotFoundError:
        raise AEPOInputError(f"{flag} {repo_id!r}: no such {repo_type} on the Hub (or it is private: pass a "
                             "token). Check the name, or pass a local path.") from None
    except RevisionNotFoundError:
        raise AEPOInputError(f"{flag} {repo_id!r}: revision {revision!r} does not exist.") from None
    except Exception as err:  # connection errors come from the HTTP client of the installed hub version
        if not _is_connection_error(err):
            raise
        raise AEPOInputError(f"{flag} {repo_id!r} needs the Hugging Face Hub, which is unreachable "
                             f"({type(err).__name__}). Pass a local path, or set HF_HUB_OFFLINE=1 to use "
                             "only the local cache.") from None


def _is_connection_error(err: Exception) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "NetworkError",
                         "TransportError", "OfflineModeIsEnabled"}) or isinstance(err, OSError)



def check_models(config, *, needs_embeddings: bool = True, token: str | None = None):
    """The embedder (when a split embeds) and the reward model of `config` (an AEPOConfig) can be loaded; returns
    the reward model's scorer when checking it loaded it (`wants_forward_check`), else None."""
    from ..models.embedders import PACKAGED_EMBEDDERS
    from ..rewards import REWARD_MODELS, is_judge, is_server

    reward = config.reward_model
    if is_judge(reward) and not config.reward_column:
        check_judge(config)
    if is_server(reward) and not config.reward_column:
        from ..rewards.server import check_server_endpoint

        check_server_endpoint(reward, config.request_timeout)  # its URL, then one GET of its model list
    if needs_embeddings and config.embedding_model not in PACKAGED_EMBEDDERS:
        check_model(config.embedding_model, "--embedding_model", revision=config.embedding_revision, token=token)
    if (config.reward_column or reward is None or callable(reward) or is_judge(reward) or is_server(reward)
            or reward in REWARD_MODELS):
        return None
    check_model(reward, "--reward_model", revision=config.reward_revision, token=token, classifier=True,
                reward_output=config.reward_output, trust_remote_code=config.trust_remote_code)
    return loaded_reward_scorer(config) if wants_forward_check(config) else None


def check_judge(config) -> None:
    """`judge:MODEL` names a model, has a readable template with its placeholders, and an endpoint (--api_base) that
    answers once and lists the model."""
    from ..rewards.judge import check_judge_endpoint, load_template

    load_template(config.judge_template)
    check_judge_endpoint(config.reward_model, config.api_base, config.request_timeout)


@dataclass(frozen=True)
class Checked:
    """What the checks before embedding found and loaded, for the pipeline to use rather than find or load again:
    the input's columns (`Layout`) and the reward models' scorers that their checks loaded, by annotator key."""

    layout: Any
    reward_scorer: dict | None = None


def check_before_embedding(dataset, config, configs: dict, token: str | None = None) -> Checked:
    """The data's columns fit the options and every model loads, before the first expensive stage; returns the
    columns found and the reward scorer the check loaded (`Checked`).

    `configs`: the AEPOConfig of each output split (the embedder is checked when any split embeds)."""
    from ..transforms.to_response_lists import resolve_layout, sample_rows

    from .chain import reshape_config

    layout = resolve_layout(sample_rows(dataset), reshape_config(config, configs))
    for prescreen in {c.prescreen_model for c in configs.values() if c.select_config().needs_prescreen
                      and isinstance(c.prescreen_model, str)}:
        from ..rewards import REWARD_MODELS

        if prescreen not in REWARD_MODELS:
            check_model(prescreen, "--prescreen_model", token=token, classifier=True)
    scorers = check_annotators(config, configs, token)
    return Checked(layout, scorers)


def check_annotators(config, configs: dict, token: str | None = None) -> dict:
    """The embedder and every split's annotator load (each distinct one once); returns annotator key -> the scorer
    its check loaded (for the pipeline to use)."""
    from .chain import annotator_key

    scorers = {}
    embeds = any(c.select_config().needs_embeddings for c in configs.values())
    for key, c in {annotator_key(c): c for c in [config, *configs.values()]}.items():
        if key not in scorers:
            scorers[key] = check_models(c, token=token, needs_embeddings=embeds)  # loads last
            embeds = False
    return {key: scorer for key, scorer in scorers.items() if scorer is not None}


def check_run_paths(source: str, cache_dir: str, output_folder: Path, token: str | None = None) -> None:
    """Before reading anything: the input exists (a Hub dataset answers once), the run can write its outputs,
    and the output folder is not the input it reads (`aepo`, `aepo select`, `aepo pair`)."""
    from huggingface_hub import constants

    from ..io.files import input_kind

    if Path(output_folder).resolve() == Path(source).resolve():
        raise AEPOInputError(f"The output folder {output_folder} is the input: choose another --output.")
    if input_kind(source) == "hub" and not constants.HF_HUB_OFFLINE:
        ask_hub_once(source, "DATASET", "dataset", token=token)
    check_writable_dir(cache_dir, "--cache_dir")
    check_writable_dir(Path(output_folder).parent, "--output")
