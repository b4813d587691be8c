"""Sweep workers: each claims trials of the shared study until its budget is met.

Any number of workers, on any number of hosts, may run against one storage. Under the
study's budget lock (storage.StorageLock) a worker re-queues trials whose worker died, counts
the trials that are done, running or queued, and asks Optuna for one more only while that
count is below the budget; the lock is released as soon as the trial has started. So the
study ends with exactly `n_trials` complete or pruned trials: a trial that raised is kept as
FAIL with its error and replaced; a killed worker's trial is kept as FAIL and re-run with
the same parameters (Optuna's heartbeat + RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from ..cache import _alive
from ..errors import HarnessError
from .storage import StorageLock, open_storage, quiet_experimental, retry_callback
from .trial import TrialSetup, label, run_trial

log = logging.getLogger(__name__)
POLL_S = 2.0  # how often a worker with nothing to claim looks for re-queued trials
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Tally:
    done: int = 0  # complete + pruned
    running: int = 0
    waiting: int = 0
    errors: int = 0  # failed by an exception in the trial (not by a dead worker)
    last_error: str = ""

    @property
    def live(self) -> int:
        return self.done + self.running + self.waiting


def tally(study: optuna.Study) -> Tally:
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("error")]
    errors = [t for t in failed if t.user_attrs.get("failure") == "exception"]
    return Tally(
        done=states[TrialState.COMPLETE] + states[TrialState.PRUNED],
        running=states[TrialState.RUNNING],
        waiting=states[TrialState.WAITING],
        errors=len(errors),
        last_error=errors[-1].user_attrs["error"] if errors else "",
    )


def requeue_dead(study: optuna.Study, storage: Any) -> list[int]:
    """Fail and re-queue RUNNING trials of dead worker processes on this host, and those
    whose heartbeat went stale anywhere. Returns the numbers failed here.

    `storage` is the handle the study was opened on; its public BaseStorage methods write
    a trial this process does not own. (Not `study.tell`: it runs the sampler's
    after_trial, and the grid sampler's calls `study.stop()`, which raises outside
    `optimize`.)"""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    host, numbers = socket.gethostname(), []
    retry = retry_callback(storage)
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if owner != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:  # a finished trial takes no attributes: say why first, then fail it
            storage.set_trial_user_attr(trial_id, "error", f"worker {owner}:{pid} died")
            storage.set_trial_user_attr(trial_id, "failure", "worker died")
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        retry(study, storage.get_trial(trial_id))
        numbers.append(t.number)
    return numbers


@dataclass
class Worker:
    study: optuna.Study
    url: str
    budget: int
    setup: TrialSetup
    echo: Callable[[str], None] = print
    ran: list[int] = field(default_factory=list)
    storage: Any = None  # the handle the study was opened on (None: open one from url)

    def run(self) -> list[int]:
        """Claim and run trials until the study's budget is met; the trial numbers run."""
        lock = StorageLock(self.url, self.study.study_name)
        storage = self.storage if self.storage is not None else open_storage(self.url)
        while True:
            with lock:
                for n in requeue_dead(self.study, storage):
                    self.echo(f"{label(n)}: its worker died; re-queued with the same parameters")
                now = tally(self.study)
                if now.errors >= self.budget:
                    raise HarnessError(f"{now.errors} trials failed; the last: {now.last_error}",
                                       f"study {self.study.study_name}")  # fmt: skip
                claim = now.waiting > 0 or now.live < self.budget
                if claim:  # the objective releases the lock once its trial exists
                    with quiet_experimental():  # optimize checks heartbeats too
                        self.study.optimize(self.objective(lock), n_trials=1, catch=(Exception,))
                    continue
            if now.running == 0:
                return self.ran
            time.sleep(POLL_S)  # others are running trials that may yet be re-queued

    def objective(self, lock: StorageLock) -> Callable[[optuna.Trial], list[float]]:
        def objective(trial: optuna.Trial) -> list[float]:
            lock.release()
            self.ran.append(trial.number)
            for key, value in (("worker", worker_id()), ("error", ""), ("failure", "")):
                trial.set_user_attr(key, value)  # a re-queued trial inherits its old ones
            try:
                out = run_trial(trial, self.setup)
            except optuna.TrialPruned as why:
                self.echo(f"{label(trial.number)} pruned: {why}")
                raise
            except KeyboardInterrupt:
                trial.set_user_attr("failure", "interrupted")
                trial.set_user_attr("error", "interrupted")
                raise
            except Exception as err:
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                trial.set_user_attr("failure", "exception")
                trial.set_user_attr("error", f"{type(err).__name__}: {message}")
                self.echo(f"{label(trial.number)} failed: {type(err).__name__}: {message}")
                log.debug("trial %d failed", trial.number, exc_info=True)
                raise
            trial.set_user_attr("metrics", out.metrics)
            trial.set_user_attr("trained", out.trained)
            trial.set_user_attr("dir", str(out.out_dir))
            trial.set_user_attr("wandb", out.wandb_dirs)
            trial.set_user_attr("seconds", round(out.seconds, 2))
            shown = ", ".join(f"{o.metric}={v:.4g}" for o, v in
                              zip(self.setup.spec.objectives, out.values, strict=True))  # fmt: skip
            trained = ", ".join(out.trained) or "nothing"
            self.echo(f"{label(trial.number)} complete in {out.seconds:.0f} s: {shown} "
                      f"| {trial.params} | trained: {trained}")  # fmt: skip
            return out.values

        return objective
