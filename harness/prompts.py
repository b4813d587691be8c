"""`prompts`: a fixed list of prompts sampled by every arm with the same noise.

The benchmark DALLE2-pytorch's users asked for (lucidrains/DALLE2-pytorch#199): each arm
(at one seed) samples every prompt `n` times, drawing from NoiseStreams of purpose "prompts"
keyed by (prompt index, replica), so two arms' images of a prompt differ only by what the
arms change (common random numbers, as in `run`). Writes one grid per prompt, the arms side
by side (OUT/<experiment>/prompts/prompt-NN.png, a row per replica), and one W&B table (a
row per prompt, a column per arm) in a run of job_type `prompts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import progress, tracking
from .arm import Runner
from .config import Config, Experiment
from .config.hashing import digest
from .data.images import to_uint8
from .diffusion.noise import NoiseStreams
from .errors import HarnessError
from .grids import labelled_grid
from .pipeline import Pipeline
from .stages.graph import stage_keys

PURPOSE = "prompts"


@dataclass
class PromptsResult:
    folder: Path  # the grids, prompts.txt
    grids: list[Path]
    wandb_dir: str | None


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"cannot read prompts: {err}", str(path)) from None
    prompts = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
    if not prompts:
        raise HarnessError("no prompts (one per line; `#` starts a comment)", str(path))
    return prompts


@torch.no_grad()
def sample_prompts(pipe: Pipeline, cfg: Config, prompts: list[str], n: int) -> torch.Tensor:
    """uint8 (P, n, 3, H, W): replica k of prompt i from the stream (i, k)."""
    rows = [(i, k) for i in range(len(prompts)) for k in range(n)]
    chunks, bs = [], cfg.sample.batch_size
    for lo in progress.bar(range(0, len(rows), bs), desc="prompts", unit="batch"):
        part = rows[lo : lo + bs]
        tokens = pipe.clip.tokenize([prompts[i] for i, _ in part])
        z_t, text_enc, mask = pipe.clip.encode_tokens(tokens)
        # `run` samples from cached embeddings, whose text_enc is stored as float16: round
        # alike so a prompt that is also a test caption reads the same conditioning
        text_enc = text_enc.half().float()
        streams = NoiseStreams(cfg.seed, cfg.sample.seed, part, purpose=PURPOSE)
        out = pipe.generate(z_t, text_enc, mask, tokens, streams)
        chunks.append(to_uint8(out["images"]).cpu())
    images = torch.cat(chunks)
    return images.view(len(prompts), n, *images.shape[1:])


def run_prompts(
    exp: Experiment, prompts_file: Path, out: Path, cache_dir: Path | None = None,
    seed: int | None = None, n: int = 1, echo: Callable[[str], None] = print,
) -> PromptsResult:  # fmt: skip
    """Every arm of `exp` at `seed` (default its first) samples the prompts; grids + table."""
    prompts = read_prompts(prompts_file)
    seed = exp.seeds[0] if seed is None else seed
    runner = Runner(exp, out, cache_dir, progress=progress.enabled(), echo=echo)
    images: dict[str, torch.Tensor] = {}
    configs: dict[str, Config] = {}
    for arm in exp.arms:
        echo(f"{arm.label}  seed {seed}")
        cfg = configs[arm.label] = exp.config(arm, seed)
        pipe, _ = runner.pipeline(cfg, stage_keys(cfg))
        images[arm.label] = sample_prompts(pipe, cfg, prompts, n)
    folder = runner.root / "prompts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("".join(f"{i:02d}  {p}\n" for i, p in enumerate(prompts)))
    labels = list(images)
    grids = []
    for i in range(len(prompts)):
        rows = [[images[a][i, k] for a in labels] for k in range(n)]
        grids.append(labelled_grid(rows, [labels] * n, folder / f"prompt-{i:02d}.png"))
    wandb_dir = track(exp, configs, prompts, images, seed, runner.root)
    return PromptsResult(folder, grids, wandb_dir)


def track(exp: Experiment, configs: dict[str, Config], prompts: list[str],
          images: dict[str, torch.Tensor], seed: int, root: Path) -> str | None:  # fmt: skip
    """One W&B run: a table with a row per prompt and each arm's samples in a column."""
    first = next(iter(configs.values()))
    plain = {a: dataclasses.asdict(c) for a, c in configs.items()}
    config: dict[str, Any] = {"prompts": prompts, "seed": seed, "arms": plain}
    run = tracking.init_run(
        first.tracking, name="prompts", group=exp.name, job_type=PURPOSE, config=config,
        directory=root, run_id=tracking.run_id(exp.name, PURPOSE, seed, digest(config)),
    )  # fmt: skip
    if run is None:
        return None
    import wandb
    from torchvision.utils import make_grid

    columns = ["index", "prompt", *images]
    rows = [
        [i, p, *(wandb.Image(make_grid(images[a][i], nrow=len(images[a][i])).permute(1, 2, 0)
                             .numpy()) for a in images)]
        for i, p in enumerate(prompts)
    ]  # fmt: skip
    run.log({"prompts": wandb.Table(columns=columns, data=rows)})
    return tracking.finish(run)
