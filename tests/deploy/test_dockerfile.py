"""deploy/Dockerfile: what it copies exists, it runs unprivileged, and (slow) its RUN steps pass."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.deploy.dockerfile import ROOT, dockerignore, ignored, instructions, run_build


def test_it_copies_only_what_exists_and_is_not_ignored():
    patterns = dockerignore(ROOT)
    copies = [shlex.split(args) for word, args in instructions() if word == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/"), patterns), source


def test_it_runs_liqwatch_as_an_unprivileged_user():
    steps = dict(instructions())
    assert steps["FROM"].startswith("python:3.11")
    user = steps["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert json.loads(steps["ENTRYPOINT"]) == ["liqwatch"]
    assert json.loads(steps["CMD"])[0] == "run"


def test_dockerignore_patterns():
    patterns = [".venv", "**/__pycache__", "tests"]
    assert ignored(".venv", patterns)
    assert ignored("watcher/notify/__pycache__/app.cpython-311.pyc", patterns)
    assert not ignored("watcher/notify/app.py", patterns)


@pytest.mark.slow
def test_the_run_steps_pass_in_a_clean_virtualenv(tmp_path):
    # Needs PyPI: pip installs the project and its dependencies.
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:3.11-slim\nRUN false\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_build(broken)
    run_build()
