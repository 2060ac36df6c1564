"""int8 ONNX: ONNX Runtime static quantization of an exported float graph, calibrated on real
person crops.

Static quantization fixes every activation's int8 range before deployment, from the ranges
the float graph shows on calibration inputs. Those inputs are cut exactly as ``ldnet predict``
cuts people (``prepare_crops`` in the weights' convention), plus their mirror images, since
the flip test feeds the network both: a range taken from other pictures than the ones the
network will see clips or wastes the eight bits.

Weights are quantized to 7 bits (``reduce_range``), so that the file is right on every x86-64
CPU and not only on the one it was made on. ONNX Runtime runs uint8 activations x int8 weights
(U8S8) on AVX2 and AVX-512 CPUs without VNNI with VPMADDUBSW, which adds each pair of
products into a saturating 16-bit integer; with 8-bit weights a pair reaches 255 * 127 * 2 =
64770 and clips at 32767 (on a 2-core AMD EPYC, AVX2 only, the demo checkpoint lost 0.064 AP
that way, 0.001 with 7-bit weights; VNNI CPUs accumulate in 32 bits and did not show it).
ONNX Runtime's quantization guide ("When and why do I need to try U8U8?", "When to use
reduce-range and per-channel quantization?") names the two remedies, reduce_range or U8U8,
and says per-channel weights on AVX2 / AVX-512 generally need reduce_range;
``quantize_static``'s own docstring recommends QUInt8 / QInt8 with ``reduce_range=True`` for
x86 CPUs without VNNI. Reduce range keeps the U8S8 kernels and format this module was measured
with, and it rules saturation out by construction: weights in [-64, 64], so a pair is at most
255 * (64 + 64) = 32640 <= 32767. It costs one bit of weight precision on VNNI CPUs too, and
a file cannot choose per CPU: it does not know where it will run (docs/deploy.md has the
measured AP and speed). The choice is recorded in the file as ``ldnet.quantization``.
"""

from __future__ import annotations

import io
import logging
import tempfile
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ldnet.errors import LDNetError

if TYPE_CHECKING:  # the command line imports this module for its choices: keep that light
    import torch

    from ldnet.models.record import ModelRecord

# ONNX Runtime's calibration methods by the names the command line uses.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_FORMATS = ("qdq", "qoperator")
# The default: MinMax takes every outlier of thousands of crops into its ranges, percentile
# (ONNX Runtime's 99.999th of |x|) clips them; on the demo checkpoint, calibrated on its
# training images alone, int8 lost 0.0100 AP with MinMax and 0.0065 with percentile
# (docs/measurements.md). ONNX Runtime's histogram calibrators keep every activation of one
# collection in memory, so calibration is collected one batch at a time (its
# `CalibStridedMinMax`), which merges the histograms batch by batch: 0.9 GB for 2400 `ldnet_s`
# crops instead of 6.6 GB for 256 in one collection.
DEFAULT_CALIBRATION_METHOD = "percentile"
# 7-bit weights, [-64, 64]: no pair of uint8 x int8 products can saturate ONNX Runtime's 16-bit
# sums on x86-64 CPUs without VNNI (the module docstring). False is the former call.
REDUCE_RANGE = True
# A calibration crop is left out when the float network's activations on it run past this
# multiple of the median crop's (the largest |activation| at the stem's and at each stage's
# outputs). One 8-bit range per tensor cannot hold both kinds: on the COCO-MINI memorisation
# checkpoint (a trained published `ldnet_w32`) 16 of 172 crops grew stage by stage to 12-208x
# the median crop's (the others at most 5.7x), their ranges quantized every other crop's
# activations to a few levels, and int8 lost all AP (0.908 -> 0.000); calibrated without
# them, 0.932 (docs/measurements.md "int8"). On the demo's crops the largest is 2.9x.
RUNAWAY_FACTOR = 10.0


@dataclass(frozen=True)
class FloatTail:
    """The part of the graph kept in float: every node in one of ``scopes`` (ONNX name
    scopes, "/stages.2/hr_modules.0/") and in none of ``except_scopes``."""

    scopes: tuple[str, ...]
    except_scopes: tuple[str, ...] = ()

    def covers(self, node_name: str) -> bool:
        inside = node_name.startswith(self.scopes)
        return inside and not node_name.startswith(self.except_scopes)


def float_tail(model: torch.nn.Module) -> FloatTail:
    """The last multi-resolution fusion of ``model`` (its last module outside the branches)
    and its head, which int8 leaves in float.

    The fusion sums every branch at the 1/4 map into values far more negative than positive
    (-18.4 to 3.2 on a demo checkpoint), the LeakyReLU after it keeps the positive part
    (negative ones at a hundredth), and the head reads that: one uint8 range spends most of
    its levels on what the LeakyReLU flattens, and there the int8 heatmaps drifted furthest
    from float (19 dB signal-to-noise before that LeakyReLU, 11 dB after it). Left in float,
    for a 1x1 convolution per branch, the sums at the 1/4 map and the head, the int8 AP
    change of two demo checkpoints averaged -0.0017 instead of -0.0074 (docs/deploy.md)."""
    last_stage = len(model.stages) - 1
    last_module = f"/stages.{last_stage}/hr_modules.{len(model.stages[-1].hr_modules) - 1}/"
    return FloatTail((last_module, "/head/"), (last_module + "branches",))


class CalibrationError(LDNetError):
    """Calibration data that cannot be used."""


@dataclass
class CalibrationSet:
    """Normalised crops (N, 3, H, W) for calibration, and what was left out on the way."""

    crops: np.ndarray
    images: int  # images that gave at least one crop
    unreadable: list[tuple[str, str]]  # (file name, reason)
    without_boxes: int  # images the detection file gives no person box for
    runaway: int = 0  # crops left out by ``drop_runaway_crops``

    def describe(self, folder: Path) -> str:
        crops, images = len(self.crops), self.images
        described = f"{crops} crops (mirrored included) of {images} images in {folder}"
        if self.runaway:
            described += (
                f", {self.runaway} more left out (activations past {RUNAWAY_FACTOR:g}x "
                "the median crop's)"
            )
        return described


def calibration_set(
    folder: str | Path, record: ModelRecord, detections: str | Path | None = None
) -> CalibrationSet:
    """The crops of every image in ``folder``, each image whole or, with ``detections`` (a
    COCO detection-results file, as ``ldnet predict --detections`` reads), its person boxes.

    Unreadable images are skipped and counted; none left stops with a ``CalibrationError``."""
    from ldnet.data.dataset import prepare_crops
    from ldnet.predict.boxes import DetectionFile, check_boxes, whole_image_box
    from ldnet.predict.errors import PredictInputError
    from ldnet.predict.sources import open_source

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


def activation_peaks(model: torch.nn.Module, crops: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(N, parts): the largest |activation| of each crop at the outputs of ``model``'s stem
    and of each of its stages (float, eval mode)."""
    import torch

    found: list[torch.Tensor] = []

    def record(module, args, output) -> None:
        outputs = output if isinstance(output, (list, tuple)) else [output]
        found.append(torch.stack([out.abs().amax(dim=(1, 2, 3)) for out in outputs]).amax(0))

    parts = [model.stem, *model.stages]
    hooks = [part.register_forward_hook(record) for part in parts]
    peaks = []
    try:
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                found.clear()
                model(torch.from_numpy(crops[start : start + batch_size]))
                peaks.append(torch.stack(found, dim=1))
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(peaks).numpy()


def runaway_ratios(peaks: np.ndarray) -> np.ndarray:
    """(N,): each crop's largest ratio, over the parts, of its ``activation_peaks`` to the
    median crop's."""
    median = np.median(peaks, axis=0)
    # A part whose median crop has no activation at all (a dead stage) has no scale to
    # compare with: it is not used, rather than letting every live crop look like a runaway.
    live = median > 0
    return (peaks[:, live] / median[live]).max(axis=1, initial=0.0)


def drop_runaway_crops(model: torch.nn.Module, calibration: CalibrationSet) -> CalibrationSet:
    """``calibration`` without the crops on which ``model``'s activations run past
    ``RUNAWAY_FACTOR`` x the median crop's at any stage (counted in ``runaway``)."""
    ratio = runaway_ratios(activation_peaks(model.eval(), calibration.crops))
    keep = ratio <= RUNAWAY_FACTOR
    return replace(
        calibration,
        crops=np.ascontiguousarray(calibration.crops[keep]),
        runaway=calibration.runaway + int((~keep).sum()),
    )


def quantize_onnx(
    float_path: str | Path,
    output: str | Path,
    calibration: CalibrationSet,
    *,
    method: str = DEFAULT_CALIBRATION_METHOD,
    quant_format: str = "qdq",
    calibration_note: str = "",
    batch_size: int = 8,
    keep_float: FloatTail | None = None,
    ldconvs: str = "",
) -> Path:
    """Write the int8 form of the exported float graph ``float_path`` to ``output``.

    Weights are int8 per output channel, activations uint8 with the ranges ``method`` takes
    from the calibration crops (percentile by default, see ``DEFAULT_CALIBRATION_METHOD``);
    the nodes ``keep_float`` covers stay float (``float_tail``). QDQ by default (float
    operators between QuantizeLinear / DequantizeLinear pairs, which ONNX Runtime fuses into
    QLinearConv and friends when it loads the file): on an AVX-512 VNNI CPU it ran ldnet_s
    at 1.29x the float graph at batch 8 where the QOperator form ran 1.21x, and lost less AP
    (docs/deploy.md; 8-bit weights then). Weights are 7-bit (``REDUCE_RANGE``, the module
    docstring says why). The float file's ``ldnet.*`` record is copied, with ``precision`` = int8,
    ``calibration`` (method and data), ``quantization`` (format, types, weight range,
    what stays float) and ``ldconvs`` (what became of the LDConvs, if given) added."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ldnet.deploy.export import INPUT_NAME, read_metadata
    from ldnet.files import atomic_path

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}")
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"unknown quantization format {quant_format!r}")

    crops = calibration.crops

    class Batches(CalibrationDataReader):
        """The crops in batches; ``set_range`` (in batches) lets ONNX Runtime collect one
        stride at a time (``CalibStridedMinMax``), so that the histogram calibrators merge
        their histograms batch by batch instead of keeping every activation in memory."""

        def __init__(self):
            self.starts = range(0, len(crops), batch_size)
            self.pending = iter(self.starts)

        def __len__(self):
            return len(self.starts)

        def set_range(self, start_index: int, end_index: int):
            self.pending = iter(self.starts[start_index:end_index])

        def get_next(self):
            start = next(self.pending, None)
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
        graph = onnx.load(str(prepared)).graph
        kept_float = [n.name for n in graph.node if keep_float and keep_float.covers(n.name)]
        if keep_float is not None and not kept_float:
            raise ValueError(f"{float_path}: no node in the scopes to keep float {keep_float}")
        with atomic_path(output) as partial, _quiet_root_logger():
            quantize_static(
                str(prepared),
                str(partial),
                Batches(),
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=True,
                reduce_range=REDUCE_RANGE,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[method],
                nodes_to_exclude=kept_float,
                # Calibration runs in a temporary folder of its own (augmented graph).
                extra_options={
                    "CalibTensorRangeSymmetric": False,
                    # One batch at a time: memory bounded by one batch's activations.
                    "CalibStridedMinMax": 1,
                },
            )
            record.update(
                precision="int8",
                calibration=f"{method}, {calibration_note}",
                quantization=quantization_record(quant_format, REDUCE_RANGE, len(kept_float)),
                **({"ldconvs": ldconvs} if ldconvs else {}),
            )
            _set_metadata(partial, record)
    return output


def quantization_record(quant_format: str, reduce_range: bool, kept_float: int = 0) -> str:
    """The ``ldnet.quantization`` entry: what the file's integers are and why."""
    if reduce_range:
        weights = (
            "int8 weights per output channel in [-64, 64] (reduce_range: 7 bits, so no "
            "uint8 x int8 pair sum can saturate ONNX Runtime's 16-bit VPMADDUBSW sums on "
            "x86-64 CPUs without VNNI)"
        )
    else:
        weights = "int8 weights per output channel in [-127, 127] (8 bits)"
    described = f"{quant_format.upper()}, uint8 activations, {weights}"
    if kept_float:
        described += f"; {kept_float} nodes in float (the last fusion and the head)"
    return described


@contextmanager
def _quiet_root_logger():
    """The quantizer logs a warning on the root logger for every integer tensor it leaves
    alone (shapes, indices), and its histogram calibrators print a line to stdout for every
    calibration batch (300 for the demo): none of it is a problem or a result."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _set_metadata(path: Path, record: dict[str, str]) -> None:
    import onnx

    from ldnet.deploy.export import METADATA_PREFIX

    proto = onnx.load(str(path))
    kept = [e for e in proto.metadata_props if not e.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in record.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, str(value)
    onnx.save(proto, str(path))
