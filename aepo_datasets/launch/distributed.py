"""The launcher's process group: how many ranks it got against how many were asked for, stopping every rank
when the main process fails before the others start (no rank left waiting at a barrier), and checking that every
node sees the same output folder.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import AEPOInputError, IncompleteRunError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# set by a launcher that really started several processes (torchrun, mpirun, srun via accelerate)
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# set by `accelerate launch` in the process it starts
ACCELERATE_LAUNCH_VARS = ("ACCELERATE_DYNAMO_BACKEND", "ACCELERATE_MIXED_PRECISION")


def check_process_count(state, command: Sequence[str]) -> None:
    """Log how many ranks run; refuse (one line, exit 2) to run on fewer than `accelerate launch` was asked for.

    `accelerate launch` starts several CPU processes only through mpirun (`mpirun_config: {mpirun_hostfile: ...}`
    in its config, or `--mpirun_hostfile`);
    without one it silently starts a single process, which would then do all the work alone.
    """
    num_processes, wanted = state.num_processes, requested_processes()
    if wanted is not None and num_processes < wanted:
        from ..redaction import redact_command

        raise AEPOInputError(
            f"accelerate launch was asked for {wanted} processes but started {num_processes}: it starts several CPU "
            "processes only through mpirun. Start them with torchrun instead: python -m torch.distributed.run "
            f"--standalone --nproc_per_node {wanted} {redact_command(command)} (or, with MPI installed, pass "
            f"--mpirun_hostfile FILE or put 'mpirun_config: {{mpirun_hostfile: FILE}}' in the accelerate config; FILE "
            f"holds 'localhost slots={wanted}')")  # fmt: skip
    if state.is_main_process:
        logger.info("Running on %d process%s (%s)", num_processes, "es" if num_processes != 1 else "",
                    getattr(state.distributed_type, "value", state.distributed_type))


def requested_processes(env: dict | None = None, parent_argv: Sequence[str] | None = None) -> int | None:
    """The number of processes `accelerate launch` was asked for, when it started this process without a
    multi-process launcher; None when that is not the case or cannot be told."""
    env = os.environ if env is None else env
    if not all(name in env for name in ACCELERATE_LAUNCH_VARS) or any(name in env for name in WORLD_SIZE_VARS):
        return None
    argv = _parent_argv() if parent_argv is None else list(parent_argv)
    if argv is None:  # cannot read the parent's command line: accelerate sets MASTER_ADDR only for several
        return 2 if "MASTER_ADDR" in env else None
    launch_args = _accelerate_launch_args(argv)
    return None if launch_args is None else _num_processes(launch_args)


def _parent_argv() -> list[str] | None:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return None


def _accelerate_launch_args(argv: Sequence[str]) -> list[str] | None:
    """The arguments after `accelerate launch` or `python -m accelerate.commands.launch`, if `argv` is that."""
    for i, arg in enumerate(argv):
        if arg == "accelerate.commands.launch" or (arg == "launch" and i and
                                                    os.path.basename(argv[i - 1]).startswith("accelerate")):
            return list(argv[i + 1:])
    return None


def _num_processes(launch_args: list[str]) -> int | None:
    """`--num_processes`, else the config file's `num_processes` (accelerate's own parser and config reader)."""
    from accelerate.commands.config import default_config_file
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    try:
        args, _ = launch_command_parser().parse_known_args(launch_args)
        if args.num_processes is None:
            config_file = args.config_file or (default_config_file if os.path.isfile(default_config_file) else None)
            args.num_processes = config_file and load_config_from_file(config_file).num_processes
    except (SystemExit, Exception) as err:  # not ours to report: accelerate itself accepted the command
        logger.debug("Could not read the accelerate launch arguments %s: %s", shlex.join(launch_args), err)
        return None
    return args.num_processes if isinstance(args.num_processes, int) and args.num_processes > 0 else None


def main_process_first(state, load: Callable[[], T]) -> T:
    """`load()` on the main process, then on the others; if the main process fails, every rank stops at once.

    Replaces `state.main_process_first()`, whose barrier the main process never reaches when it raises, so the
    other ranks waited there until the launcher killed them. The main process re-raises its error; the others
    raise a one-line error that names it.
    """
    from accelerate.utils import broadcast_object_list

    result, error = None, None
    if state.is_main_process:
        try:
            result = load()
        except Exception as err:  # told to every rank below, then re-raised
            error = err
    verdict = [None if error is None else (isinstance(error, AEPOInputError), f"{type(error).__name__}: {error}")]
    if state.num_processes > 1:
        broadcast_object_list(verdict)  # the other ranks wait here for the main process
    if verdict[0] is not None:
        state.wait_for_everyone()  # every rank has the verdict before any of them exits
        if error is not None:
            raise error
        user_error, reason = verdict[0]
        raise (AEPOInputError if user_error else IncompleteRunError)(
            f"rank {state.process_index} stopped: the main process failed before the others could start ({reason})")
    return result if state.is_main_process else load()


SHARED_CHECK_SECONDS = 5.0  # how long a rank waits for the others' markers (a network filesystem's listing lags)


def check_shared_folder(state, folder: Path | str, flag: str = "output_dir") -> None:
    """Every rank proves it sees the files every other rank wrote in `folder`; if any does not, every rank stops
    together with one line (AEPOInputError, exit 2) naming the folder. Costs two collectives and a few tiny files.

    Each rank writes `folder/.aepo-ranks/rank-<r>.<token>` (the token is rank 0's, new for every run), waits at a
    barrier, lists the folder, and the verdicts are gathered so that no rank goes on alone.
    """
    if state.num_processes < 2:
        return
    from accelerate.utils import broadcast_object_list, gather_object

    token = [uuid.uuid4().hex[:12] if state.is_main_process else None]
    broadcast_object_list(token)
    markers = Path(folder) / ".aepo-ranks"
    mine = markers / f"rank-{state.process_index}.{token[0]}"
    markers.mkdir(parents=True, exist_ok=True)
    mine.write_text(socket.gethostname())
    state.wait_for_everyone()
    missing = _missing_ranks(markers, token[0], state.num_processes)
    verdicts = gather_object([(state.process_index, socket.gethostname(), missing)])
    mine.unlink(missing_ok=True)
    blind = [(rank, host, lost) for rank, host, lost in verdicts if lost]
    if blind:
        raise AEPOInputError(_not_shared_message(folder, flag, blind))


def _missing_ranks(markers: Path, token: str, world: int) -> list[int]:
    """The ranks whose marker this rank cannot see, after waiting up to SHARED_CHECK_SECONDS for them."""
    deadline = time.monotonic() + SHARED_CHECK_SECONDS
    while True:
        seen = set(os.listdir(markers))  # a fresh listing: a network filesystem revalidates the directory
        missing = [r for r in range(world) if f"rank-{r}.{token}" not in seen]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.25)


def _not_shared_message(folder, flag: str, blind: list) -> str:
    rank, host, lost = blind[0]
    return (f"{flag} {str(folder)!r} must be one folder shared by every node (a shared filesystem, same path on "
            f"every node): rank {rank} on {host} cannot see the files rank(s) {_short(lost)} wrote there"
            + (f" ({len(blind)} ranks affected)" if len(blind) > 1 else "") + ". Put output_dir on a shared "
            "filesystem and rerun the same command.")


def _short(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks[:8])) + (f" and {len(ranks) - 8} more" if len(ranks) > 8 else "")
