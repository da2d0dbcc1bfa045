"""Publish preference datasets to the Hugging Face Hub with a dataset card that records how they were made.

`push_preference_dataset` pushes a `DatasetDict` with the real `DatasetDict.push_to_hub` (parquet shards plus the
`configs`/`dataset_info` YAML that `datasets` merges into README.md), then merges our card (built by
`aepo_datasets.hub.card` from a `RunInfo`) into that README. This module holds the Hub I/O: pushes, retries with
backoff, the `aepo push` folder.

The token comes from `token`, else `HF_TOKEN`, else the `hf auth login` cache (huggingface_hub resolves the last two
itself when `token=None`). It is never logged or written: secrets are scrubbed from the card and from error
messages (`aepo_datasets.redaction`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import datasets
from huggingface_hub import HfApi, HfFileSystem
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from ..errors import AEPOInputError, HubPushError
from .card import build_dataset_card
from ..redaction import known_secrets, scrub_text
from ..report.run_info import RUN_INFO_FILENAME, RunInfo, read_run_info
from ..report.stats import reward_stats

__all__ = ["MAX_BACKOFF_S", "RETRY_STATUS", "is_transient", "push_later_command", "push_preference_dataset",
           "push_saved_folder"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 412, 425, 429})  # and every 5xx
MAX_BACKOFF_S = 60.0


def check_repo_id(repo_id: str, flag: str) -> None:
    """A dataset repo id the Hub accepts (`name` or `owner/name`), checked before the run rather than after it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        reason = str(err).splitlines()[0].replace(" Use `repo_type` argument if needed.", "")
        raise AEPOInputError(f"--{flag} {repo_id!r} is not a Hub repo id: {reason} (e.g. your-name/aepo-preferences)") \
            from None


def push_later_command(local_folder: str | os.PathLike | None, repo_id: str) -> str:
    folder = shlex.quote(str(local_folder)) if local_folder is not None else "<folder>"
    return f"aepo push {folder} {shlex.quote(repo_id)}"


def _push_error(repo_id: str, reason: str, local_folder: str | os.PathLike | None) -> HubPushError:
    where = f" in {local_folder}" if local_folder is not None else " (save it with DatasetDict.save_to_disk(<folder>))"
    message = (f"Could not push to the Hugging Face Hub dataset repo {repo_id!r}: {reason}. The local output is "
               f"complete{where}; push it later with: {push_later_command(local_folder, repo_id)}")  # fmt: skip
    return HubPushError(message, repo_id, None if local_folder is None else str(local_folder))


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2  # huggingface_hub >= 1

        return (httpx2.TransportError,)
    except ImportError:
        import requests  # older huggingface_hub

        return (requests.ConnectionError, requests.Timeout)


_TRANSPORT_ERRORS = _transport_errors()
_HUB_ERRORS = (HfHubHTTPError, OSError, *_TRANSPORT_ERRORS)


def is_transient(err: BaseException) -> bool:
    """Connection errors, HTTP 408/409/412/425/429 and 5xx are worth a retry; 401/403/404 and the rest are not."""
    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        status = getattr(err.response, "status_code", None)
        return status is None or status >= 500 or status in RETRY_STATUS
    return isinstance(err, (ConnectionError, TimeoutError, *_TRANSPORT_ERRORS))


def _describe(err: BaseException, secrets: Sequence[str]) -> str:
    lines = str(err).strip().splitlines()
    return scrub_text(f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "), secrets)


@dataclasses.dataclass(frozen=True)
class _Retry:
    repo_id: str
    local_folder: str | os.PathLike | None
    max_retries: int
    backoff_base: float
    secrets: tuple[str, ...]

    def run(self, step: Callable[[], T], what: str) -> T:
        """`step()`, retried on transient errors with exponential backoff; Hub errors end as HubPushError."""
        for attempt in range(self.max_retries + 1):
            try:
                return step()
            except _HUB_ERRORS as err:
                reason = _describe(err, self.secrets)
                if attempt == self.max_retries or not is_transient(err):
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise _push_error(self.repo_id, f"could not {what}{tries} ({reason})", self.local_folder) from err
                delay = min(self.backoff_base * 2**attempt, MAX_BACKOFF_S)
                logger.warning("Could not %s (%s); retry %d/%d in %.1f s", what, reason, attempt + 1,
                               self.max_retries, delay)  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable")


def _read_card(api: HfApi, repo_id: str, revision: str, token: str | None) -> str | None:
    fs = HfFileSystem(endpoint=api.endpoint, token=token)
    try:
        return fs.read_text(f"datasets/{repo_id}@{revision}/README.md", encoding="utf-8", newline="")
    except FileNotFoundError:
        return None


def _push_card(api: HfApi, repo_id: str, info: RunInfo, token: str | None, secrets) -> str:
    head = api.repo_info(repo_id, repo_type="dataset").sha
    card = build_dataset_card(info, _read_card(api, repo_id, head, token), title=repo_id.split("/")[-1],
                              secrets=secrets)  # fmt: skip
    commit = api.upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=repo_id,
                             repo_type="dataset", commit_message="Update AEPO dataset card", parent_commit=head)
    return commit.commit_url


def push_preference_dataset(
    dataset_dict: datasets.DatasetDict,
    repo_id: str,
    *,
    run_info: RunInfo | None = None,
    token: str | None = None,
    private: bool = True,
    max_retries: int = 4,
    backoff_base: float = 1.0,
    commit_message: str | None = None,
    local_folder: str | os.PathLike | None = None,
) -> str:
    """Push `dataset_dict` to the dataset repo `repo_id`, then merge our card into its README; return the repo URL.

    The card is built from `run_info` (None: a card that says the run is unknown), with the reward statistics of
    the splits pushed. Two commits: the data (parquet + datasets' metadata), then README.md, each retried up to `max_retries` times on
    transient errors after `backoff_base * 2**attempt` s (at most 60). `private` applies only to a new repo.
    Raises `HubPushError`, whose message gives `aepo push <local_folder> <repo_id>` to push the local copy later.
    """
    if not isinstance(dataset_dict, datasets.DatasetDict):
        raise TypeError(f"dataset_dict must be a datasets.DatasetDict, got {type(dataset_dict).__name__}")
    if max_retries < 0 or backoff_base < 0:
        raise AEPOInputError(f"max_retries and backoff_base must be >= 0, got {max_retries} and {backoff_base}")
    if run_info is not None and not isinstance(run_info, RunInfo):
        raise TypeError(f"run_info must be an aepo_datasets.report.run_info.RunInfo (RunInfo.from_json reads a "
                        f"run_info.json), got {type(run_info).__name__}")
    secrets = known_secrets(token)
    retry = _Retry(repo_id, local_folder, max_retries, backoff_base, secrets)
    stats = {str(name): reward_stats(split) for name, split in dataset_dict.items()}
    info = (run_info or RunInfo()).with_reward_stats(stats)  # the card describes the rows that are pushed
    logger.info("Pushing splits %s (%d rows) to %s", list(stats), sum(s["rows"] for s in stats.values()), repo_id)
    message = commit_message or "Upload AEPO preference dataset"
    data_commit = retry.run(
        lambda: dataset_dict.push_to_hub(repo_id, private=private, token=token, commit_message=message),
        "upload the data",
    )
    repo_url = data_commit.repo_url if data_commit is not None else None
    resolved_id = repo_url.repo_id if repo_url is not None else repo_id  # `repo_id` may lack the namespace
    api = HfApi(endpoint=datasets.config.HF_ENDPOINT, token=token)
    card_url = retry.run(lambda: _push_card(api, resolved_id, info, token, secrets),
                         "upload the dataset card")  # fmt: skip
    logger.info("Pushed %s (card commit %s)", resolved_id, card_url)
    return str(repo_url) if repo_url is not None else f"{api.endpoint}/datasets/{resolved_id}"


def push_saved_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = True,
    max_retries: int = 4,
    backoff_base: float = 1.0,
    commit_message: str | None = None,
) -> str:
    """Push a `DatasetDict.save_to_disk` folder with the run_info.json inside it, if any; backs `aepo push`."""
    try:
        dataset_dict = datasets.load_from_disk(str(folder))
    except FileNotFoundError as err:
        raise AEPOInputError(f"{folder} is not a saved dataset folder ({err})") from err
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError: a file cut short or damaged
        raise AEPOInputError(f"{folder} cannot be read back ({type(err).__name__}: {str(err).splitlines()[0]}); "
                             "run the job again to write it anew.") from None
    if not isinstance(dataset_dict, datasets.DatasetDict):
        raise AEPOInputError(f"{folder} holds a single Dataset; `aepo push` expects a DatasetDict saved with "
                             "save_to_disk")  # fmt: skip
    run_info = read_run_info(folder)
    if run_info is None:
        logger.warning("No %s in %s: the dataset card will not record the run settings", RUN_INFO_FILENAME, folder)
    return push_preference_dataset(dataset_dict, repo_id, run_info=run_info, token=token, private=private,
                                   max_retries=max_retries, backoff_base=backoff_base, commit_message=commit_message,
                                   local_folder=folder)  # fmt: skip
