"""One LightningModule per unCLIP stage; each composes a net (nets/) and the diffusion.

The stage graph is stages/graph.py; every stage trains through stages/stage.py.
Importing this package registers the built-in prior kinds, so `prior.kind` resolves wherever
a stage module is in use (as lm-evaluation-harness's models package registers its models).
"""

from . import prior_kinds  # noqa: F401
