"""Benchmarks, measured side by side: models (forward and training steps), the data pipeline,
`ldnet serve` under load, and `make gpu-check` on a CUDA device."""
