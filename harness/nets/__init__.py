"""Plain nn.Modules: UNets, text encoders, prior Transformers."""
