"""The `aepo` command: `aepo DATASET ...` (the main job), `aepo run ...` (the launcher), `aepo push ...`, and the
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
    if argv[:1] == ["run"]:
        from ..launch.launcher import main as launcher_main

        return launcher_main(argv[1:])
    if argv[:1] == ["select"]:
        from .select import main as select_main

        return select_main(argv[1:])
    if argv[:1] == ["pair"]:
        from .pair import main as pair_main

        return pair_main(argv[1:])
    if argv[:1] == ["push"]:
        from .push import main as push_main

        return push_main(argv[1:])
    from .job import main as job_main

    return job_main(argv)


if __name__ == "__main__":
    sys.exit(main())
