"""`report OUT/<study>`: the best trial(s), and Optuna's own plots and table of the study.

OUT/<study>/report/summary.txt              what `report` prints
OUT/<study>/report/trials.csv               study.trials_dataframe()
OUT/<study>/report/history_<metric>.png     optimisation history, one per objective
OUT/<study>/report/importances.png          parameter importances (PED-ANOVA)
OUT/<study>/report/pareto_front.png         with two or three objectives
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import HarnessError
from .storage import open_storage

MARKER = "sweep.json"


@dataclass
class SweepReport:
    folder: Path
    text: str
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # plots that could not be drawn, and why


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def load_marker(run_dir: Path, storage: str | None) -> tuple[dict[str, Any], str]:
    meta = json.loads((run_dir / MARKER).read_text())
    url = storage or os.environ.get("HARNESS_SWEEP_STORAGE") or meta["storage"]
    if url == meta["storage"] and meta.get("storage_has_password"):
        raise HarnessError("the storage URL needs its password: pass --storage URL",
                           str(run_dir / MARKER))  # fmt: skip
    return meta, url


def report_sweep(run_dir: str | Path, storage: str | None = None) -> SweepReport:
    import optuna

    run_dir = Path(run_dir)
    meta, url = load_marker(run_dir, storage)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=meta["study"], storage=open_storage(url))
    except KeyError:
        raise HarnessError(f"no study {meta['study']!r} in {meta['storage']}") from None
    folder = run_dir / "report"
    folder.mkdir(exist_ok=True)
    names = [o["metric"] for o in meta["objectives"]]
    rep = SweepReport(folder, summary(study, names))
    (folder / "summary.txt").write_text(rep.text + "\n")
    rep.files.append(folder / "summary.txt")
    write_csv(study, folder / "trials.csv", rep)
    write_plots(study, names, folder, rep)
    return rep


def summary(study: Any, names: list[str]) -> str:
    from optuna.trial import TrialState

    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in TrialState}  # fmt: skip
    lines = [f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return "\n".join([*lines, "no complete trial yet"])
    if len(names) == 1:
        best, title = [study.best_trial], f"best trial ({study.direction.name.lower()} {names[0]})"
    else:
        best = sorted(study.best_trials, key=lambda t: t.number)
        title = f"Pareto front: {len(best)} trial(s) ({', '.join(names)})"
    lines.append(title + ":")
    for t in best:
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values, strict=True))
        params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        lines.append(f"  trial {t.number}: {values}  |  {params}")
        if t.user_attrs.get("dir"):
            lines.append(f"    {t.user_attrs['dir']}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_csv(study: Any, path: Path, rep: SweepReport) -> None:
    frame = study.trials_dataframe(multi_index=False)
    frame.to_csv(path, index=False)
    rep.files.append(path)


def write_plots(study: Any, names: list[str], folder: Path, rep: SweepReport) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as ovm

    jobs: list[tuple[str, Any]] = []
    for i, name in enumerate(names):  # names come from sweep.json: a file name only via a slug
        jobs.append((f"history_{paths.safe_slug(name)}.png",
                     lambda i=i, name=name: ovm.plot_optimization_history(
            study, target=(lambda t: t.values[i]) if len(names) > 1 else None,
            target_name=name)))  # fmt: skip
    jobs.append(("importances.png", lambda: ovm.plot_param_importances(
        study, evaluator=PedAnovaImportanceEvaluator())))  # fmt: skip
    if len(names) in (2, 3):
        jobs.append(("pareto_front.png", lambda: ovm.plot_pareto_front(study, target_names=names)))
    else:
        rep.skipped.append("pareto_front.png: one objective, no front")
    for filename, draw in jobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                rep.skipped.append(f"{filename}: {str(err).splitlines()[0]}")
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(folder / filename, dpi=100)
        plt.close(fig)
        rep.files.append(folder / filename)
