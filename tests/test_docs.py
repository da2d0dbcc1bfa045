"""Every command in README.md and docs/*.md runs as written.

Fenced shell blocks are read line by line (a trailing `\\` continues a line). A command is an `aepo …` line or one
that runs the launcher (`python aepo_datasets/run.py …`, `accelerate launch … aepo_datasets/run.py …`, torchrun).
One that needs what a test machine has not got says so in a trailing comment, `# needs: hub`, `gpu`, `server`,
`cluster` or `data` (the shared data set), and is only parsed: `parse_job` checks its every flag. The rest run for
real, in a temporary folder holding the repository's `dataset/` and `configs/`, in the order the page gives them
(so `aepo select` comes before the `aepo pair` that reads its folder), with `--num_instructions 2` added to keep them
short (not in a block that reads `--labels`: the labels name the prompts they were given for). A fenced block whose
first line is `# NAME.py` or `# NAME.yaml` is the file of that name the commands use (a plugin, a config).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from aepo_datasets.job import COMMANDS, parse_job

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
NEEDS = re.compile(r"#.*\bneeds: ([\w, ]+)")
KNOWN_NEEDS = {"hub", "gpu", "server", "cluster", "data"}
FILE_HEADER = re.compile(r"#\s*([\w.-]+\.(?:py|yaml))\s*$")
SET_UP = ("python -m venv", "python -m pytest", "pip ")  # the install and test commands: CI runs them (.ci/run)
SUBCOMMANDS = {"select", "pair", "push", "run", "generate"}
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
WRITTEN_ELSEWHERE = {ROOT / "docs" / "generation.md"}  # `aepo generate`'s page, written with that command


@dataclass
class Command:
    page: str
    line: str  # as written, continuations joined
    tokens: list[str]  # shell words, comments removed
    needs: set[str]
    in_labels_block: bool

    def __str__(self) -> str:
        return f"{self.page}: {self.line}"


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(page.read_text())]


def commands(page: Path) -> list[Command]:
    found = []
    for lang, body in blocks(page):
        if lang not in ("bash", "sh", "shell"):
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tokens = shlex.split(line, comments=True)
            needs = NEEDS.search(line)
            found.append(Command(page.name, line, tokens,
                                 {n.strip() for n in needs.group(1).split(",")} if needs else set(),
                                 "--labels" in body))
    return found


def is_launcher(tokens: list[str]) -> bool:
    return any(t.endswith("aepo_datasets/run.py") for t in tokens)


def job_argv(tokens: list[str]) -> tuple[str, list[str]]:
    """(the COMMANDS key, its argv) of an aepo command or a launcher line."""
    if is_launcher(tokens):
        at = next(i for i, t in enumerate(tokens) if t.endswith("aepo_datasets/run.py"))
        return "aepo run", tokens[at + 1:]
    args = tokens[1:]
    plugins = [i for i, t in enumerate(args) if t == "--plugin"]
    for i in reversed(plugins):
        del args[i:i + 2]
    if args and args[0] in SUBCOMMANDS:
        return f"aepo {args[0]}", args[1:]
    return "aepo", args


ALL = [c for page in PAGES for c in commands(page)]
JOBS = [c for c in ALL if c.tokens[0] == "aepo" or is_launcher(c.tokens)]


def test_every_command_is_an_aepo_command_or_the_set_up():
    others = [str(c) for c in ALL if c not in JOBS and not c.line.startswith(SET_UP)
              and c.tokens[0] not in ("export", "vllm", "python3", "sbatch")]
    assert others == [], "a command the doc test does not know how to check:\n" + "\n".join(others)
    assert len(JOBS) >= 20


@pytest.mark.parametrize("command", JOBS, ids=str)
def test_every_flag_of_every_command_parses(command, tmp_path, monkeypatch):
    write_files(ROOT / ("README.md" if command.page == "README.md" else f"docs/{command.page}"), tmp_path)
    for name in ("dataset", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    assert command.needs <= KNOWN_NEEDS, command.needs
    key, argv = job_argv(command.tokens)
    assert key in COMMANDS
    if "--plugin" in command.tokens:
        pytest.skip("its plugin's choices exist only once it is imported: test_commands_run_as_written runs it")
    parse_job(key, argv)


def run_here(tokens: list[str]) -> int:
    if "--plugin" in tokens:  # plugins register into process-wide registries: a process of its own
        env = {k: v for k, v in os.environ.items() if k != "AEPO_PLUGINS"}
        code = "import sys; from aepo_datasets.cli.main import main; sys.exit(main(sys.argv[1:]))"
        proc = subprocess.run([sys.executable, "-c", code, *tokens[1:]], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.returncode
    if is_launcher(tokens):
        from aepo_datasets.launch.launcher import main

        return main(job_argv(tokens)[1])
    from aepo_datasets.cli.main import main

    return main(tokens[1:])


def shortened(command: Command) -> list[str]:
    key, _ = job_argv(command.tokens)
    if command.in_labels_block or "num_instructions" not in COMMANDS[key].fields:
        return command.tokens
    return [*command.tokens, "--num_instructions", "2"]


def write_files(page: Path, folder: Path) -> None:
    for _, body in blocks(page):
        first, _, rest = body.partition("\n")
        if (name := FILE_HEADER.fullmatch(first.strip())):
            (folder / name.group(1)).write_text(body)


SLOW_PAGES = {"data.md", "extending.md", "scale.md"}  # 13-30 s each (plugins in processes of their own): `-m slow`
RUNNABLE = [pytest.param(p, marks=[pytest.mark.slow] if p.name in SLOW_PAGES else [], id=p.name)
            for p in PAGES if any(not c.needs for c in JOBS if c.page == p.name)]


@pytest.mark.parametrize("page", RUNNABLE)
def test_commands_run_as_written(page, tmp_path, monkeypatch, capsys):
    for name in ("dataset", "configs", "aepo_datasets"):
        (tmp_path / name).symlink_to(ROOT / name)
    write_files(page, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEPO_PLUGINS", raising=False)
    for command in (c for c in JOBS if c.page == page.name and not c.needs):
        code = run_here(shortened(command))
        out = capsys.readouterr()
        assert code == 0, f"{command}\n{out.err[-2000:]}"


def test_python_and_yaml_blocks_are_valid(tmp_path):
    config = tmp_path / "config.yaml"
    for page in PAGES:
        for lang, body in blocks(page):
            if lang == "python":
                compile(body, page.name, "exec")
            elif lang == "yaml":
                data = yaml.safe_load(body)
                if isinstance(data, dict) and "splits" in data:  # a launcher config: every split's options checked
                    config.write_text(body)
                    parse_job("aepo run", ["--config", str(config), "dataset=x.csv", "output_dir=out"])


def test_relative_links_resolve():
    broken = []
    for page in [*PAGES, ROOT / "studies" / "README.md", ROOT / "benchmarks" / "RESULTS.md"]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.exists() and path not in WRITTEN_ELSEWHERE:
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_readme_is_read_in_ten_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.slow
def test_python_blocks_run(tmp_path, monkeypatch):
    """The README's and the docs' Python examples, end to end (the README's maps all 12 example prompts)."""
    (tmp_path / "dataset").symlink_to(ROOT / "dataset")
    monkeypatch.chdir(tmp_path)
    for page in PAGES:
        for lang, body in blocks(page):
            first = body.partition("\n")[0].strip()
            if lang == "python" and not FILE_HEADER.fullmatch(first) and "load_dataset" in body:
                exec(compile(body, page.name, "exec"), {})
