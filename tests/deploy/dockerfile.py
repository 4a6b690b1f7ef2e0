"""Run deploy/Dockerfile's build steps without a container engine, in a clean virtualenv.

What the image build does, as far as it can be done on this machine: a fresh
directory stands for the image's filesystem root, WORKDIR and COPY lay out
what the image gets from the build context (honouring .dockerignore's simple
patterns), ENV sets the environment, and each RUN command runs in bash with
a new virtualenv's ``bin`` first on PATH (standing for the image's Python).
Then the ENTRYPOINT runs with ``--help``. What is not reproduced: the base
image itself (its Debian and its Python build), USER, and the container's
runtime (mounts, secrets, networking).

    python -m tests.deploy.dockerfile     # needs PyPI: pip installs the project
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns (the plain and ``**/`` forms) exclude a path."""
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, bare) for p in parts):
            return True
    return False


def dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def copy_into(context: Path, sources: list[str], dest: Path, patterns: list[str]) -> None:
    for source in sources:
        src = context / source
        if not src.exists():
            raise FileNotFoundError(f"COPY {source}: not in the build context")
        if src.is_dir():
            # A directory's contents go into the destination, as COPY does.
            for path in sorted(src.rglob("*")):
                rel = path.relative_to(context).as_posix()
                if path.is_file() and not ignored(rel, patterns):
                    out = dest / path.relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.name)


def run_build(dockerfile: Path = DOCKERFILE, context: Path = ROOT, *, keep: bool = False) -> Path:
    """Replay the build in a temporary directory; return it. CalledProcessError if a step fails."""
    top = Path(tempfile.mkdtemp(prefix="liqwatch-image-"))
    image = top / "root"
    env_dir = top / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = {
        "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin",
        "VIRTUAL_ENV": str(env_dir),
        "HOME": str(top),
        "LANG": "C.UTF-8",
    }
    # The machine's pip settings (an index, a proxy) still apply, as a build's would.
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "HTTPS_PROXY", "HTTP_PROXY"):
        if name in os.environ:
            env[name] = os.environ[name]
    workdir = image
    image.mkdir()
    patterns = dockerignore(context)
    entrypoint: list[str] = []
    try:
        for word, args in instructions(dockerfile):
            if word == "WORKDIR":
                workdir = image / args.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif word == "ENV":
                for pair in shlex.split(args):
                    key, _, value = pair.partition("=")
                    env[key] = value
            elif word == "COPY":
                *sources, dest = shlex.split(args)
                target = image / dest.lstrip("/") if dest.startswith("/") else workdir / dest
                copy_into(context, sources, target, patterns)
            elif word == "RUN":
                print(f"RUN {args}", file=sys.stderr)
                subprocess.run(["bash", "-c", args], cwd=workdir, env=env, check=True)
            elif word == "ENTRYPOINT":
                entrypoint = json.loads(args)
        if entrypoint:
            subprocess.run(
                [*entrypoint, "--help"], cwd=workdir, env=env, check=True, capture_output=True
            )
    finally:
        if not keep:
            shutil.rmtree(top, ignore_errors=True)
    return top


if __name__ == "__main__":
    run_build()
    print("deploy/Dockerfile: every RUN step passed in a clean virtualenv", file=sys.stderr)
