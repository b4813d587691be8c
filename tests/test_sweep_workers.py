"""The worker loop's accounting, fast: trials replaced by a stub (no training), so these
check the budget, failures and re-queueing on real Optuna storages in milliseconds. The
end-to-end versions (real trials, separate processes, PostgreSQL) are in test_sweep.py."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest

from harness.errors import HarnessError
from harness.sweep import worker as worker_mod
from harness.sweep.spec import load_sweep
from harness.sweep.storage import open_storage, resolve_url
from harness.sweep.study import open_study
from harness.sweep.trial import TrialOutcome, TrialSetup
from harness.sweep.worker import Worker, worker_id
from tests.conftest import MICRO

SWEEP = f"""study: stub
experiment: {MICRO}
space:
  decoder.guidance_scale: {{low: 1.0, high: 3.0}}
  decoder.eta: {{low: 0.0, high: 1.0}}
objectives: [fd_clip]
sampler: {{name: random, seed: 0}}
n_trials: 5
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "stub.yaml"
    path.write_text(SWEEP)
    return load_sweep(path)


def stub_trials(monkeypatch, fail: set[int] = frozenset(), always_fail: bool = False) -> list:
    calls: list[int] = []

    def run_trial(trial, setup):
        params = {p.path: p.suggest(trial) for p in setup.spec.space}
        calls.append(trial.number)
        time.sleep(0.02)
        if always_fail or trial.number in fail:
            raise HarnessError("boom")
        value = params["decoder.guidance_scale"] + params["decoder.eta"]
        return TrialOutcome([value], {"fd_clip": value}, [], Path("."), [], 0.02)

    monkeypatch.setattr(worker_mod, "run_trial", run_trial)
    return calls


def make_worker(spec, url: str, lines: list[str]) -> Worker:
    study = open_study(spec, open_storage(url), url)
    setup = TrialSetup(spec, Path("."), None, suite=None, echo=lines.append)
    return Worker(study, url, spec.budget, setup, lines.append)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_meet_the_budget_exactly(spec, tmp_path, monkeypatch, kind):
    stub_trials(monkeypatch)
    url = resolve_url(str(tmp_path / ("study.log" if kind == "journal" else "study.db")), tmp_path)
    lines: list[str] = []
    workers = [make_worker(spec, url, lines) for _ in range(2)]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    trials = optuna.load_study(study_name="stub", storage=open_storage(url)).get_trials()
    assert [t.number for t in trials] == list(range(5))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert sorted(workers[0].ran + workers[1].ran) == list(range(5))  # none run twice
    assert len({tuple(t.params.items()) for t in trials}) == 5  # the two samplers differ


def test_a_failing_trial_is_recorded_with_its_error_and_replaced(spec, tmp_path, monkeypatch):
    stub_trials(monkeypatch, fail={1})
    url = resolve_url(str(tmp_path / "study.db"), tmp_path)
    lines: list[str] = []
    make_worker(spec, url, lines).run()
    trials = optuna.load_study(study_name="stub", storage=open_storage(url)).get_trials()
    assert [t.state.name for t in trials].count("COMPLETE") == 5
    failed = trials[1]
    assert failed.state.name == "FAIL"
    assert failed.user_attrs["error"] == "HarnessError: boom"
    assert any("trial-0001 failed: HarnessError: boom" in line for line in lines)


def test_a_sweep_whose_every_trial_fails_stops(spec, tmp_path, monkeypatch):
    calls = stub_trials(monkeypatch, always_fail=True)
    url = resolve_url(str(tmp_path / "study.db"), tmp_path)
    with pytest.raises(HarnessError, match="5 trials failed; the last: HarnessError: boom"):
        make_worker(spec, url, []).run()
    assert len(calls) == 5


def test_a_dead_workers_running_trial_is_requeued_with_its_parameters(spec, tmp_path, monkeypatch):
    stub_trials(monkeypatch)
    url = resolve_url(str(tmp_path / "study.log"), tmp_path)  # journal: no heartbeat at all
    lines: list[str] = []
    worker = make_worker(spec, url, lines)
    orphan = worker.study.ask()
    for p in spec.space:
        p.suggest(orphan)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = worker_id().rpartition(":")[0]
    orphan.set_user_attr("worker", f"{host}:{dead.pid}")
    worker.run()
    trials = optuna.load_study(study_name="stub", storage=open_storage(url)).get_trials()
    assert trials[0].state.name == "FAIL" and "died" in trials[0].user_attrs["error"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state.name == "COMPLETE" and retry.params == trials[0].params
    assert [t.state.name for t in trials].count("COMPLETE") == 5
    assert "trial-0000: its worker died; re-queued with the same parameters" in lines
