from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child `harness` process, as a user's shell would give it: without
    WANDB_SERVICE, which an in-process wandb test leaves behind and which would make the
    child log through this test process's W&B service (shared state across tests)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, **extra}


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The real entry point, `python -m harness ...`, in a subprocess."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = child_env(**{"PYTHONPATH": path, "WANDB_MODE": "offline", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write_yaml(tmp_path: Path):
    """write_yaml("name.yaml", text) -> path inside tmp_path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


MICRO = ROOT / "tests" / "fixtures" / "micro.yaml"


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory) -> Path:
    """A stage cache holding every stage of the micro experiment, filled once per session by
    the real entry point (`python -m harness run`)."""
    base = tmp_path_factory.mktemp("micro_session")
    out = run_cli("run", str(MICRO), "--out", str(base / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(base / "cache")}, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (base / "cold_stdout.txt").write_text(out.stdout)
    return base / "cache"
