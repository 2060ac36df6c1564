"""Training logs: a CSV file (for `ldnet plot` and spreadsheets) and TensorBoard."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ldnet.errors import MissingExtra, require_extra

FIELDS = ("epoch", "iteration", "loss", "lr", "samples_per_s", "metric_name", "metric")


class RunLog:
    """Appends rows to ``log.csv`` and scalars to TensorBoard in the run folder."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = run_dir / "log.csv"
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, FIELDS)
        if new:
            self._csv.writeheader()
        self._tb = None
        if tensorboard:
            try:
                require_extra("tensorboard", "TensorBoard logging")
            except MissingExtra as missing:  # the CSV log still has every figure
                print(f"note: {missing}; log.csv has every figure", file=sys.stderr)
            else:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def train_step(self, epoch: int, iteration: int, loss: float, lr: float, rate: float):
        self._csv.writerow(
            {"epoch": epoch, "iteration": iteration, "loss": loss, "lr": lr, "samples_per_s": rate}
        )
        self._file.flush()
        if self._tb:
            self._tb.add_scalar("train/loss", loss, iteration)
            self._tb.add_scalar("train/lr", lr, iteration)
            self._tb.add_scalar("train/samples_per_s", rate, iteration)

    def validation(self, epoch: int, iteration: int, metrics: dict[str, float], key: str):
        self._csv.writerow(
            {"epoch": epoch, "iteration": iteration, "metric_name": key, "metric": metrics[key]}
        )
        self._file.flush()
        if self._tb:
            for name, value in metrics.items():
                self._tb.add_scalar(f"val/{name}", value, iteration)

    def close(self):
        self._file.close()
        if self._tb:
            self._tb.close()
