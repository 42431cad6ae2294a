"""A researcher's day: runs under nohup print progress, stay quiet, resume honestly; help and
README agree."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import REPO

from probeheat.cli import build_parser
from probeheat.commands.reference import command_options, readme_block, reference_block

CLI = [sys.executable, "-m", "probeheat.cli", "run"]
# flags README names that belong to other programs (pip, torchrun), to every command
# (--help) or to the reference generator (--write)
FOREIGN = {"--help", "--index-url", "--no-deps", "--nproc-per-node", "--write"}


def run_args(model, out, *extra: str) -> list[str]:
    return ["--model", str(model), "--limit", "8", "--max-new-tokens", "4", "--batch-size", "2",
            "--shard-size", "2", "--threads", "1", "--out", str(out), *extra]


def piped(args: list[str], *, python: tuple[str, ...] = (), fault: str | None = None
          ) -> subprocess.CompletedProcess:
    """The CLI with stdout and stderr going to pipes, as under nohup or a batch scheduler."""
    env = {**os.environ, "PROBEHEAT_FAULT": fault or ""}
    return subprocess.run([sys.executable, *python, "-m", "probeheat.cli", "run", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_piped_run_prints_plain_progress_lines(tiny_model_folder, tmp_path):
    done = piped(run_args(tiny_model_folder, tmp_path / "run", "--log-interval", "0.01"))
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("[run]")]
    assert len(lines) >= 4, done.stderr  # start, one per shard (4 shards), done
    shard_lines = [ln for ln in lines if "shard" in ln]
    assert len(shard_lines) >= 4
    last = lines[-1]
    assert re.search(r"\b8/8 examples\b", last) and "examples/s" in last and "acc" in last
    assert "\x1b[" not in done.stderr  # no terminal control codes in a log file


def test_log_format_json_is_one_object_per_line(tiny_model_folder, tmp_path):
    done = piped(run_args(tiny_model_folder, tmp_path / "run", "--log-format", "json",
                          "--log-interval", "0.01"))
    assert done.returncode == 0, done.stderr
    events = [json.loads(ln) for ln in done.stderr.splitlines() if ln.startswith("{")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert events[-1]["done"] == events[-1]["total"] == 8
    assert {"rate", "eta_s", "accuracy", "elapsed_s"} <= set(events[-1])
    assert sum(1 for e in events if "shard" in e.get("note", "")) >= 4


def test_run_raises_no_deprecation_or_future_warning(tiny_model_folder, tmp_path):
    """With deprecation and future warnings as errors, a run (and its resume) still works:
    probeheat uses the current transformers cache API and silences third-party noise."""
    strict = ("-W", "error::DeprecationWarning", "-W", "error::FutureWarning")
    done = piped(run_args(tiny_model_folder, tmp_path / "run"), python=strict)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr.lower()
    assert "Loading weights" not in done.stderr


def test_a_resumed_run_reports_the_whole_run_and_the_sessions_share(tiny_model_folder,
                                                                    tmp_path):
    out = tmp_path / "run"
    first = piped(run_args(tiny_model_folder, out), fault="shard-done:2:kill")
    assert first.returncode == -signal.SIGKILL
    resumed = piped(run_args(tiny_model_folder, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    from probeheat.bundle import open_run

    run = open_run(out)
    whole = sum(bool(r["correct"]) for r in run.records()) / 8
    text = resumed.stdout + resumed.stderr
    assert f"{whole:.1%}" in text, text  # the whole run's accuracy
    assert "this session 4 examples" in text and "4 resumed" in text, text


# --- help and README ------------------------------------------------------------------------

def test_readme_lists_every_option_of_every_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme_block(readme)
    assert block is not None, "README lost its <!-- options:begin/end --> markers"
    assert block == reference_block(), \
        "README's option table is stale: python -m probeheat.commands.reference --write README.md"


def test_every_flag_readme_names_exists():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    known = {name for options in command_options(build_parser()).values()
             for option in options for name in option.split("/")}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", readme))
    assert named - known - FOREIGN == set()


@pytest.mark.parametrize("command", ["run", "probe", "export", "steer", "select"])
def test_every_option_has_help_with_its_default(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        if not action.option_strings or action.help is None or "--help" in action.option_strings:
            continue
        assert action.help.strip(), action.option_strings
        has_default = action.default not in (None, False, "==SUPPRESS==") and \
            not isinstance(action.default, list | tuple)
        if has_default and action.nargs != 0:
            text = action.help % vars(action) if "%(" in action.help else action.help
            assert "default" in text.lower(), (command, action.option_strings, action.help)


def test_readmes_notebook_example_runs(tmp_path):
    """The python block of README's notebook section runs as written (on the sample bundles)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### In a notebook", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "exact_answer" in done.stdout or "last_q" in done.stdout, done.stdout
    cv_auc = float(done.stdout.strip().splitlines()[-1])
    assert 0.0 <= cv_auc <= 1.0


def test_counts_read_in_the_singular_and_the_plural():
    from probeheat.progress import counted

    assert [counted(n, "example") for n in (0, 1, 2)] == ["0 examples", "1 example",
                                                          "2 examples"]
