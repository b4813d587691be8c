"""`python -m harness sweep` end to end at micro scale: stage reuse across trials, W&B runs,
`report`, pruning from a stage's validation loss, two workers on PostgreSQL, and a worker
killed mid-trial.

One cold sweep (module fixture) trains the three stages the micro setup needs; every other
test reuses that cache, so only trial 0 of that sweep and the pruned trial train anything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from tests.conftest import MICRO, ROOT, child_env, run_cli

SUITE = """description: sweep test suite
metrics: [fd, clip_score]
features: evaluator_clip
split: test
n_samples: 16
n_bootstrap: 10
"""
# micro.yaml without the prior and upsamplers: three small stages to train, seconds a trial.
# One thread: on 2 shared cores two-thread torch spends most of its time waiting (~8x slower).
EXPERIMENT = f"""name: sweep_micro
base: {MICRO}
metrics: suite.yaml
data: {{resolution: 16, n_train: 128, n_val: 64, n_test: 32}}
clip: {{train_steps: 5}}
eval: {{clip: {{train_steps: 5}}}}
prior: {{kind: text_embedding}}
decoder: {{train_steps: 6, batch_size: 16}}
upsamplers: {{first: {{enabled: false}}, second: {{enabled: false}}}}
train: {{threads: 1}}
"""
GUIDANCE = """study: {study}
experiment: exp.yaml
space:
  decoder.guidance_scale: {{low: 1.0, high: 4.0}}
  decoder.eta: {{low: 0.0, high: 1.0}}
objectives: [{{metric: fd_clip, direction: minimize}}, clip_score]
sampler: {{name: random, seed: 0}}
n_trials: 3
"""


def write_sweep(folder: Path, study: str) -> Path:
    path = folder / f"{study}.yaml"
    path.write_text(GUIDANCE.format(study=study))
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict:
    """A cold 3-trial sweep through the real entry point (trial 0 trains, 1 and 2 reuse)."""
    base = tmp_path_factory.mktemp("sweep")
    (base / "suite.yaml").write_text(SUITE)
    (base / "exp.yaml").write_text(EXPERIMENT)
    env = {"HARNESS_CACHE": str(base / "cache"), "OMP_NUM_THREADS": "1"}
    out = run_cli("sweep", str(write_sweep(base, "micro_guidance")), "--out", str(base / "runs"),
                  env=env, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = base / "runs" / "micro_guidance"
    study = optuna.load_study(study_name="micro_guidance", storage=f"sqlite:///{root}/study.db")
    return {"base": base, "env": env, "stdout": out.stdout, "root": root, "study": study}


def trial_lines(stdout: str, number: int) -> list[str]:
    return [line for line in stdout.splitlines() if f"trial-{number:04d}" in line]


def test_sweep_meets_its_budget_and_sampling_knobs_train_nothing(micro):
    trials = micro["study"].get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert trials[0].user_attrs["trained"] == ["clip", "eval_clip", "decoder"]
    first = "\n".join(trial_lines(micro["stdout"], 0))
    assert first.count("trained in") == 3
    for n in (1, 2):  # only guidance scale and eta moved: every stage comes from the cache
        lines = trial_lines(micro["stdout"], n)
        assert not [line for line in lines if "training" in line], lines
        assert sum("reused" in line for line in lines) == 3, lines
        assert "trained: nothing" in lines[-1]
        assert trials[n].user_attrs["trained"] == []
    assert len({tuple(t.params.items()) for t in trials}) == 3
    assert "3/3 trials done" in micro["stdout"]
    study_db = micro["root"].resolve() / "study.db"
    assert f"dashboard: optuna-dashboard sqlite:///{study_db}" in micro["stdout"]


def test_each_trial_is_a_wandb_run_in_the_sweep_group(micro):
    trials = micro["study"].get_trials()
    runs = sorted((micro["root"] / "trials" / "wandb").glob("offline-run-*"))  # the study's
    arm_runs = [r for t in trials for r in t.user_attrs["wandb"]]
    assert len(arm_runs) == 3 and {str(Path(r).parent) for r in arm_runs} == {str(runs[0].parent)}
    trial = trials[1]
    wandb = Path(sys.executable).with_name("wandb")
    cmd = [str(wandb)] if wandb.exists() else [sys.executable, "-m", "wandb"]
    out = subprocess.run([*cmd, "leet", "inspect", "--json", trial.user_attrs["wandb"][0]],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    record = next(json.loads(line) for line in out.stdout.splitlines() if '"type":"run"' in line)
    run = record["run"]
    assert run["run_group"] == "micro_guidance" and run["display_name"] == "trial-0001/seed0"
    assert run["config"]["update"]["axes"] == trial.params
    assert (
        run["config"]["update"]["decoder"]["guidance_scale"]
        == trial.params["decoder.guidance_scale"]
    )


def test_report_on_a_sweep(micro):
    out = run_cli("report", str(micro["root"]))
    assert out.returncode == 0, out.stderr
    assert "Pareto front:" in out.stdout and "trial 0:" in out.stdout
    folder = micro["root"] / "report"
    for name in ("history_fd_clip", "history_clip_score", "importances", "pareto_front"):
        assert (folder / f"{name}.png").stat().st_size > 5000, name
    rows = (folder / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and "params_decoder.eta" in rows[0] and "values_fd_clip" in rows[0]


def test_pruner_fed_from_decoder_validation_discards_the_stage(micro, tmp_path, monkeypatch):
    """A training-field trial trains the decoder, whose held-out loss is reported every 2
    steps; behind an earlier trial's (impossible) zero loss, the median pruner stops it and
    the half-trained decoder never enters the cache."""
    from harness.metrics.suite import load_suite
    from harness.sweep.spec import load_sweep
    from harness.sweep.trial import TrialSetup, run_trial

    monkeypatch.setenv("WANDB_MODE", "disabled")
    base = micro["base"]
    path = base / "prune.yaml"
    path.write_text(
        "study: prune\nexperiment: exp.yaml\n"
        "space: {decoder.clip_drop: {low: 0.3, high: 0.4}}\n"
        "objectives: [fd_clip]\nsampler: {name: random, seed: 0}\n"
        "pruner: {name: median, stage: decoder, val_every: 2, n_startup_trials: 1, "
        "n_warmup_steps: 0}\n"
    )
    spec = load_sweep(path)
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(1, 0))
    dist = optuna.distributions.FloatDistribution(0.3, 0.4)
    study.add_trial(optuna.create_trial(params={"decoder.clip_drop": 0.35},
                                        distributions={"decoder.clip_drop": dist}, value=0.0,
                                        intermediate_values={2: 0.0, 4: 0.0}))  # fmt: skip
    lines: list[str] = []
    setup = TrialSetup(spec, tmp_path / "prune", base / "cache", load_suite(spec.suite),
                       echo=lines.append)  # fmt: skip
    study.optimize(lambda t: run_trial(t, setup).values, n_trials=1)
    pruned = study.trials[-1]
    assert pruned.state.name == "PRUNED", lines
    assert list(pruned.intermediate_values) == [2]  # stopped at the first report
    decoders = {p.name for p in (base / "cache" / "decoder").iterdir()}
    assert len([d for d in decoders if not d.startswith(".")]) == 1  # micro's decoder only
    assert not [d for d in decoders if d.startswith(".tmp-")]
    assert any("decoder" in line and "training" in line for line in lines)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The server .ci/run starts; skipped without one, unless CI requires it (then failed)."""
    url = os.environ.get("HARNESS_TEST_POSTGRES")
    if url:
        return url
    reason = "no PostgreSQL server: set HARNESS_TEST_POSTGRES=postgresql://... (.ci/run does)"
    if os.environ.get("HARNESS_REQUIRE_POSTGRES"):
        pytest.fail(reason + ", but HARNESS_REQUIRE_POSTGRES is set")
    pytest.skip(reason)


def worker(sweep: Path, out: Path, env: dict, *args: str) -> subprocess.Popen:
    """A sweep worker as a separate process (as it would run on another host)."""
    full = {**child_env(), **env, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "harness", "sweep", str(sweep), "--out", str(out), *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def optuna_cli() -> list[str]:
    """Optuna's own command line (its console script, or the same entry point)."""
    script = Path(sys.executable).with_name("optuna")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from optuna.cli import main; sys.exit(main())"]


def test_two_workers_share_one_postgres_study(postgres_url, micro, tmp_path):
    url = postgres_url
    study_name = f"pg_{uuid.uuid4().hex[:8]}"
    sweep = write_sweep(micro["base"], study_name)
    procs = [worker(sweep, tmp_path, micro["env"], "--storage", url, "--n-trials", "4")
             for _ in range(2)]  # fmt: skip
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(4))  # none lost, none beyond the budget
    assert {t.state.name for t in trials} == {"COMPLETE"}
    # Both joined the one study and split its budget between them. Which worker claims which
    # trial is a race (a warm worker can run all four before the other has imported torch),
    # so the split itself is not asserted; each trial's owner and the tallies are.
    assert study.user_attrs["workers_joined"] == 2
    pids = {f"{socket.gethostname()}:{p.pid}" for p in procs}
    assert {t.user_attrs["worker"] for t in trials} <= pids
    ran = [int(re.search(r"this worker ran (\d+)", log).group(1)) for log in logs]
    assert sum(ran) == 4, logs
    dirs = sorted(p.name for p in (tmp_path / study_name / "trials").glob("trial-*"))
    assert dirs == [f"trial-{n:04d}" for n in range(4)]  # each trial ran exactly once
    assert len({tuple(t.params.items()) for t in trials}) == 4  # workers sample apart
    read = subprocess.run(
        [*optuna_cli(), "trials", "--storage", url, "--study-name", study_name, "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert [t["state"] for t in json.loads(read.stdout)] == ["COMPLETE"] * 4


def test_workers_opening_a_fresh_postgres_database_at_once(postgres_url):
    """Workers started together on an empty database all create Optuna's tables; PostgreSQL
    fails all but one of them unless they take turns (it did in CI: pg_type duplicate key)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    fresh = f"race_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {fresh}"))
    try:
        url = make_url(postgres_url).set(database=fresh).render_as_string(hide_password=False)
        code = f"from harness.sweep.storage import open_storage; open_storage({url!r})"
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                  stderr=subprocess.PIPE) for _ in range(4)]  # fmt: skip
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {fresh} WITH (FORCE)"))
        admin.dispose()


def running_trial_of(storage: str, name: str, pid: int, timeout: float) -> int:
    owner = f"{socket.gethostname()}:{pid}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
                if t.user_attrs.get("worker") == owner:
                    return t.number
        except KeyError:  # the worker has not created the study yet
            pass
        time.sleep(0.2)
    raise AssertionError("the worker never started a trial")


def test_killed_worker_mid_trial_is_retried_and_the_study_finishes(micro, tmp_path):
    sweep = write_sweep(micro["base"], "killed")
    storage = f"sqlite:///{tmp_path}/killed.db"
    args = ("--storage", storage, "--n-trials", "2")
    first = worker(sweep, tmp_path, micro["env"], *args)
    number = running_trial_of(storage, "killed", first.pid, timeout=600)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    again = worker(sweep, tmp_path, micro["env"], *args)
    log = again.communicate(timeout=900)[0]
    assert again.returncode == 0, log[-3000:]
    assert f"trial-{number:04d}: its worker died; re-queued" in log
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1, states
    dead = trials[number]
    assert dead.state.name == "FAIL" and "died" in dead.user_attrs["error"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == number)
    assert retry.state.name == "COMPLETE" and retry.params == dead.params
