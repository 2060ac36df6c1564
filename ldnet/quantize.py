"""int8 ONNX: ONNX Runtime static quantization of an exported float graph, calibrated on real
person crops.

Static quantization fixes every activation's int8 range before deployment, from the ranges
the float graph shows on calibration inputs. Those inputs are cut exactly as ``ldnet predict``
cuts people (``prepare_crops`` in the weights' convention), plus their mirror images, since
the flip test feeds the network both: a range taken from other pictures than the ones the
network will see clips or wastes the eight bits.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import LDNetError

if TYPE_CHECKING:  # the command line imports this module for its choices: keep that light
    from .inference.record import ModelRecord

# ONNX Runtime's calibration methods by the names the command line uses.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_FORMATS = ("qdq", "qoperator")
# ONNX Runtime's histogram calibrators (entropy, percentile) keep every activation of every
# crop in memory until the end: `ldnet_s`'s 5978 demo crops at 128x96 went past 24 GiB and were
# killed; 512 of them took 12 GiB. An even sample of this many keeps it to about 6 GiB there
# (more for larger networks and inputs). MinMax is not affected: its calibration graph
# outputs only each tensor's minimum and maximum.
HISTOGRAM_CROP_LIMIT = 256


class CalibrationError(LDNetError):
    """Calibration data that cannot be used."""


@dataclass
class CalibrationSet:
    """Normalised crops (N, 3, H, W) for calibration, and what was left out on the way."""

    crops: np.ndarray
    images: int  # images that gave at least one crop
    unreadable: list[tuple[str, str]]  # (file name, reason)
    without_boxes: int  # images the detection file gives no person box for

    def describe(self, folder: Path) -> str:
        return f"{len(self.crops)} crops (mirrored included) of {self.images} images in {folder}"


def calibration_set(
    folder: str | Path, record: ModelRecord, detections: str | Path | None = None
) -> CalibrationSet:
    """The crops of every image in ``folder``, each image whole or, with ``detections`` (a
    COCO detection-results file, as ``ldnet predict --detections`` reads), its person boxes.

    Unreadable images are skipped and counted; none left stops with a ``CalibrationError``."""
    from .data.dataset import prepare_crops
    from .predict.boxes import DetectionFile, check_boxes, whole_image_box
    from .predict.errors import PredictInputError
    from .predict.sources import open_source

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: calibration folder not found")
    try:
        source = open_source(folder)
    except PredictInputError as error:
        raise CalibrationError(str(error)) from None
    boxes_of = DetectionFile(detections) if detections is not None else None
    crops, unreadable, without_boxes, images = [], [], 0, 0
    for frame in source:
        if frame.image is None:
            unreadable.append((frame.name, frame.error))
            continue
        if boxes_of is None:
            boxes = whole_image_box(frame.image.shape)
        else:
            boxes, _ = boxes_of(frame.image_id)
            if len(boxes) == 0:
                without_boxes += 1
                continue
        boxes = check_boxes(boxes, frame.image.shape, f"{folder / frame.name}")
        people, _, _ = prepare_crops(frame.image, boxes, record.input_size, record.convention)
        crops.extend([people, people[..., ::-1]])  # the flip test runs both
        images += 1
    if images == 0:
        reasons = [f"{len(unreadable)} unreadable"]
        if boxes_of is not None:
            reasons.append(f"{without_boxes} without a person box in {detections}")
        raise CalibrationError(
            f"{folder}: no calibration image left ({', '.join(reasons)} of {len(source)})"
        )
    return CalibrationSet(
        np.ascontiguousarray(np.concatenate(crops), dtype=np.float32),
        images,
        unreadable,
        without_boxes,
    )


def quantize_onnx(
    float_path: str | Path,
    output: str | Path,
    calibration: CalibrationSet,
    *,
    method: str = "minmax",
    quant_format: str = "qdq",
    calibration_note: str = "",
    batch_size: int = 8,
) -> Path:
    """Write the int8 form of the exported float graph ``float_path`` to ``output``.

    Weights are int8 per output channel, activations uint8 with the ranges ``method`` takes
    from the calibration crops. QDQ by default (float operators between QuantizeLinear /
    DequantizeLinear pairs, which ONNX Runtime fuses into QLinearConv and friends when it
    loads the file): on this AVX-512 VNNI CPU it ran ldnet_s at 1.29x the float graph at batch
    8 where the QOperator form ran 1.21x, and lost less AP (README "int8").
    The float file's ``ldnet.*`` record is copied, with
    ``precision`` = int8 and ``calibration`` (method and data) added."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import INPUT_NAME, read_metadata
    from .files import atomic_path

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}")
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"unknown quantization format {quant_format!r}")

    crops = calibration.crops
    if method != "minmax" and len(crops) > HISTOGRAM_CROP_LIMIT:
        crops = crops[np.linspace(0, len(crops) - 1, HISTOGRAM_CROP_LIMIT).round().astype(int)]
        calibration_note = f"{calibration_note}, {len(crops)} of them for the histograms"
        print(
            f"note: {method} calibration keeps every activation in memory: using an even "
            f"sample of {len(crops)} of the {len(calibration.crops)} crops",
            file=sys.stderr,
        )

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.starts = iter(range(0, len(crops), batch_size))

        def get_next(self):
            start = next(self.starts, None)
            if start is None:
                return None
            return {INPUT_NAME: crops[start : start + batch_size]}

    output = Path(output)
    record = read_metadata(float_path)
    with tempfile.TemporaryDirectory(prefix="ldnet-int8-") as folder:
        # Shape inference and constant folding first, as ONNX Runtime's guide asks: the
        # quantizer needs every tensor's shape to place its quantize/dequantize pairs.
        prepared = Path(folder) / "prepared.onnx"
        with _quiet_root_logger():
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        with atomic_path(output) as partial, _quiet_root_logger():
            quantize_static(
                str(prepared),
                str(partial),
                Batches(),
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[method],
                # Calibration runs in a temporary folder of its own (augmented graph).
                extra_options={"CalibTensorRangeSymmetric": False},
            )
            record.update(precision="int8", calibration=f"{method}, {calibration_note}")
            _set_metadata(partial, record)
    return output


@contextmanager
def _quiet_root_logger():
    """The quantizer logs a warning on the root logger for every integer tensor it leaves
    alone (shapes, indices): dozens of lines that are no problem."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _set_metadata(path: Path, record: dict[str, str]) -> None:
    import onnx

    from .export import METADATA_PREFIX

    proto = onnx.load(str(path))
    kept = [e for e in proto.metadata_props if not e.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in record.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    onnx.save(proto, str(path))
