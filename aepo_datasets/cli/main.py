"""The `aepo` command: `aepo DATASET ...` (the main job), `aepo run ...` (the launcher), `aepo push ...`, `aepo generate
...` (N samples per prompt from a policy's endpoint), and the
select-now-annotate-later pair `aepo select DATASET ...` / `aepo pair FOLDER --labels FILE`.

`--plugin MODULE` (any command, any position) imports MODULE before the parsers are built (`cli/plugins.py`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..errors import AEPOInputError
    from .plugins import load_plugins, take_plugin_flags

    try:  # before any parser is built: what the plugins register are valid choices
        argv, plugins = take_plugin_flags(argv)
        load_plugins(plugins)
    except AEPOInputError as err:
        print(f"aepo: error: {err}", file=sys.stderr)
        return 2
    typo = command_typo(argv[0]) if argv else None
    if typo:
        print(f"aepo: error: {typo}", file=sys.stderr)
        return 2
    if argv[:1] == ["run"]:
        from ..launch.launcher import main as launcher_main

        return launcher_main(argv[1:])
    if argv[:1] == ["select"]:
        from .select import main as select_main

        return select_main(argv[1:])
    if argv[:1] == ["pair"]:
        from .pair import main as pair_main

        return pair_main(argv[1:])
    if argv[:1] == ["generate"]:
        from .generate import main as generate_main

        return generate_main(argv[1:])
    if argv[:1] == ["push"]:
        from .push import main as push_main

        return push_main(argv[1:])
    from .job import main as job_main

    return job_main(argv)


SUBCOMMANDS = ("select", "pair", "push", "run", "generate")


def command_typo(first: str) -> str | None:
    """"aepo selct data.csv": a first word close to a command that is no file, folder or Hub-like id is a typo."""
    import difflib
    from pathlib import Path

    if first in SUBCOMMANDS or first.startswith("-") or "=" in first or Path(first).exists() or "/" in first \
            or "." in first:
        return None
    close = difflib.get_close_matches(first, SUBCOMMANDS, n=1, cutoff=0.6)
    if not close:
        return None
    return (f"unknown command {first!r}. Did you mean 'aepo {close[0]}'? Commands: {', '.join(SUBCOMMANDS)}, or "
            "aepo DATASET for the main job.")


if __name__ == "__main__":
    sys.exit(main())
