"""Training-pipeline throughput for one worker (``ldnet bench data``)."""

from __future__ import annotations

import time

import cv2

from ldnet.data.codecs import build_codec
from ldnet.data.dataset import TopDownDataset
from ldnet.data.transforms import AugmentConfig
from ldnet.datasets import dataset_kind


def run(
    dataset: str,
    annotation_file,
    image_dir,
    *,
    input_size: tuple[int, int] = (256, 192),
    codec: str = "msra",
    samples: int = 400,
    warmup: int = 10,
    seed: int = 0,
) -> dict:
    """Time ``samples`` augmented training samples (decode, augment, crop, normalise, encode)
    in this process with one OpenCV thread, as one DataLoader worker would run them."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        annotations = dataset_kind(dataset).read(annotation_file, image_dir, input_size=input_size)
        if not annotations.records:
            raise ValueError(f"{annotation_file}: no samples to benchmark")
        data = TopDownDataset(
            annotations, build_codec(codec, input_size), augment=AugmentConfig(), seed=seed
        )
        n = len(data)
        for i in range(warmup):
            data[i % n]
        start = time.perf_counter()
        for i in range(samples):
            data[i % n]
        seconds = time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
    return {
        "dataset": dataset,
        "input_size": list(input_size),
        "codec": codec,
        "samples": samples,
        "distinct_samples": n,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "ms_per_sample": 1000.0 * seconds / samples,
        "workers": 1,
    }
