"""One LightningModule per unCLIP stage; each composes a net (nets/) and the diffusion."""
