"""Training and testing: checkpoints, loss, distributed set-up, the loops."""
