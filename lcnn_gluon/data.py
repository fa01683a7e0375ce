"""Training and validation readers over ``.rec`` files, on MXNet's C++ ``ImageRecordIter``.

Each dataset's preprocessing (mean, std, resize, crop, flip) is defined once in
``PRESETS`` and read by training, export and the predictor alike. Batches are
``mx.io.DataBatch`` with ``data[0]`` of shape ``(N, C, H, W)`` float32
(normalised) and ``label[0]`` of shape ``(N,)``; the last batch of an epoch is
filled by wrapping around and ``batch.pad`` says how many samples to ignore.

    python -m lcnn_gluon.data data/packed/mnist_train.rec --dataset mnist
reads a file once with training augmentation and reports what it read and how fast.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import os
import struct
import time
from typing import Optional, Tuple

import cv2
import mxnet as mx
import numpy as np

from . import recordio

log = logging.getLogger(__name__)
Shape = Tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Preset:
    """Preprocessing of one dataset. Pixel values are in 0..255, channels RGB."""

    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    data_shape: Shape  # (C, H, W) fed to the network
    resize: int  # shorter side before cropping; 0 = as stored
    flip: bool  # random horizontal flip in training


PRESETS = {
    # the paper's recipe: resize 256, random 224 crop, flip, mean/std normalisation
    "imagenet": Preset(mean=(123.68, 116.779, 103.939), std=(58.393, 57.12, 57.375),
                       data_shape=(3, 224, 224), resize=256, flip=True),
    "mnist": Preset(mean=(33.318,), std=(78.567,), data_shape=(1, 28, 28), resize=0, flip=False),
}


def parse_image_shape(text: str, flag: str = "--image-shape") -> Shape:
    """``"C,H,W"`` as a shape of three positive integers; ``ValueError`` naming ``flag``."""
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{flag} {text}: must be C,H,W positive integers")
    return shape


def get_preset(dataset: str) -> Preset:
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[dataset]


def check_rec(rec: str, data_shape: Shape, resize: int = 0, num_classes: Optional[int] = None) -> int:
    """Check ``rec`` and its ``.idx`` before MXNet's reader opens them: they exist and match
    (:func:`lcnn_gluon.recordio.validate`, with the labels in ``[0, num_classes)`` when given),
    and ``data_shape`` fits the stored images.

    Returns the number of records. Raises ``ValueError`` naming the file and
    the mismatch (bad index, label, channel count, or images smaller than the crop).
    """
    idx = os.path.splitext(rec)[0] + ".idx"
    for path in (rec, idx):
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file (a .rec needs its .idx beside it; "
                             "pack with tools/im2rec.py)")
    recordio.validate(rec, idx, num_classes)
    reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
    try:
        if not reader.keys:
            raise ValueError(f"{idx}: index is empty")
        _, payload = mx.recordio.unpack(reader.read_idx(reader.keys[0]))
        img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)  # as stored
    except (mx.base.MXNetError, struct.error) as e:
        raise ValueError(f"{rec}: not a readable image RecordIO file ({e})") from e
    finally:
        reader.close()
    if img is None:
        raise ValueError(f"{rec}: first record does not hold a decodable image")
    channels = 1 if img.ndim == 2 or img.shape[2] == 1 else 3
    h, w = img.shape[:2]
    if resize:
        h, w = (resize, w * resize // h) if h < w else (h * resize // w, resize)
    if channels != data_shape[0]:
        raise ValueError(f"{rec}: images have {channels} channel(s) but --image-shape asks for "
                         f"{data_shape[0]}")
    if h < data_shape[1] or w < data_shape[2]:
        raise ValueError(f"{rec}: first image is {h}x{w} (after resize {resize}), smaller than "
                         f"--image-shape {data_shape[1]}x{data_shape[2]}")
    return count_records(rec)


def count_records(rec: str) -> int:
    """Number of records in ``rec``, from its ``.idx`` (one line per record)."""
    with open(os.path.splitext(rec)[0] + ".idx", "rb") as f:
        return sum(1 for line in f if line.strip())


def shard_size(num_records: int, num_parts: int, part_index: int) -> int:
    """Records in one shard: ImageRecordIter gives part ``i`` the ``i``-th block of ceil(n/parts)."""
    chunk = -(-num_records // num_parts)
    return max(0, min(num_records, (part_index + 1) * chunk) - part_index * chunk)


class RecordIter(mx.io.DataIter):
    """``ImageRecordIter`` over one shard, with exact epochs and reproducible shuffles.

    MXNet's ``round_batch=True`` wraps the last batch around, which costs about an
    extra pass of decoding on a small file and makes the next epoch start late;
    ``round_batch=False`` fills the last batch with stale samples and reports
    ``pad=0``. So this class runs ``round_batch=False``, knows the shard size and
    sets ``pad`` itself. Each epoch gets a fresh C++ iterator seeded from
    ``(seed, epoch)``: epoch ``e`` is identical whether a run started at 0 or
    resumed at ``e``. ``num_batches`` larger than the shard needs (distributed
    workers must take equal steps) continues into a reshuffled pass with ``pad=0``.

    The C++ iterator refills its output arrays in place, outside MXNet's engine:
    before fetching, ``next`` waits for pending operations (``mx.nd.waitall``; MXNet
    1.x has no per-array wait for readers), so an asynchronous training loop never
    sees a batch overwritten under it. Loops that read metrics every step are
    synchronous anyway.
    """

    def __init__(self, params: dict, num_records: int, seed: Optional[int] = None, epoch: int = 0,
                 num_batches: Optional[int] = None):
        super().__init__(params["batch_size"])
        self._params, self._seed = params, seed
        self.shard = shard_size(num_records, params.get("num_parts", 1), params.get("part_index", 0))
        self.num_batches = num_batches or -(-self.shard // self.batch_size)
        self.epoch, self._it, self._served, self._restarts = epoch, None, 0, 0
        self._start()

    def _start(self) -> None:
        mx.nd.waitall()  # see the class docstring
        params = dict(self._params)
        if self._seed is not None:
            mixed = (self._seed * 1_000_003 + self.epoch * 7919 + self._restarts) % (2 ** 31)
            params.update(seed=mixed, seed_aug=mixed)
        self._it = None  # free the previous C++ iterator (and its threads) first
        self._it = mx.io.ImageRecordIter(**params)

    @property
    def provide_data(self):
        return self._it.provide_data

    @property
    def provide_label(self):
        return self._it.provide_label

    def reset(self) -> None:
        """Start the next epoch (a no-op before the current one has served a batch)."""
        if self._served:
            self.epoch, self._served, self._restarts = self.epoch + 1, 0, 0
            self._start()

    def next(self) -> mx.io.DataBatch:
        if self._served >= self.num_batches:
            raise StopIteration
        mx.nd.waitall()  # see the class docstring
        try:
            batch = self._it.next()
        except StopIteration:  # shard exhausted before num_batches: another shuffled pass
            self._restarts += 1
            self._start()
            batch = self._it.next()
        self._served += 1
        own = -(-self.shard // self.batch_size)
        pad = self._served * self.batch_size - self.shard if self._served == own else 0
        return mx.io.DataBatch(data=batch.data, label=batch.label, pad=pad)


def _params(rec: str, batch_size: int, preset: Preset, data_shape: Shape, num_parts: int,
            part_index: int) -> dict:
    if not 0 <= part_index < num_parts:
        raise ValueError(f"part_index {part_index} must be in 0..{num_parts - 1}")
    kw = dict(path_imgrec=rec, path_imgidx=os.path.splitext(rec)[0] + ".idx",
              data_shape=data_shape, batch_size=batch_size, num_parts=num_parts,
              part_index=part_index, round_batch=False, label_width=1,
              # ctx='cpu' lets the iterator decode with OpenMP threads; without it
              # it uses one thread on a 2-core machine (docs/platform.md)
              ctx="cpu", preprocess_threads=os.cpu_count() or 1)
    if preset.resize:
        kw["resize"] = preset.resize
    for name, m, s in zip("rgb", preset.mean, preset.std):
        kw[f"mean_{name}"], kw[f"std_{name}"] = m, s
    return kw


def train_iter(rec: str, batch_size: int, dataset: str = "imagenet",
               data_shape: Optional[Shape] = None, num_parts: int = 1, part_index: int = 0,
               seed: int = 0, epoch: int = 0, num_batches: Optional[int] = None,
               random_resized_crop: bool = False, color_jitter: float = 0.0) -> RecordIter:
    """Shuffled, augmented training batches from this worker's shard of ``rec``.

    ImageNet: random ``data_shape`` crop of the image resized to 256 on its short
    side (or a random-resized crop, 8%-100% area, 3/4-4/3 aspect), random flip,
    optional brightness/contrast/saturation jitter of strength ``color_jitter``.
    MNIST: no crop or flip. Order and augmentation of epoch ``e`` depend only on
    ``(seed, e)``; ``epoch`` is the first epoch served (for resuming).
    """
    preset = get_preset(dataset)
    data_shape = tuple(data_shape or preset.data_shape)
    kw = _params(rec, batch_size, preset, data_shape, num_parts, part_index)
    kw.update(shuffle=True, rand_mirror=preset.flip)
    if random_resized_crop:
        kw.update(random_resized_crop=True, min_random_area=0.08, max_random_area=1.0,
                  min_aspect_ratio=3 / 4, max_aspect_ratio=4 / 3)
        kw.pop("resize", None)
    elif preset.resize:
        kw["rand_crop"] = True
    if color_jitter:
        kw.update(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)
    return RecordIter(kw, count_records(rec), seed=seed, epoch=epoch, num_batches=num_batches)


def val_iter(rec: str, batch_size: int, dataset: str = "imagenet",
             data_shape: Optional[Shape] = None, num_parts: int = 1,
             part_index: int = 0) -> RecordIter:
    """Validation batches from ``rec`` in stored order: resize, centre crop, normalise."""
    preset = get_preset(dataset)
    data_shape = tuple(data_shape or preset.data_shape)
    return RecordIter(_params(rec, batch_size, preset, data_shape, num_parts, part_index),
                      count_records(rec))


def read_report(it: mx.io.DataIter, max_batches: int = 0) -> dict:
    """Read ``it`` once; return count, label histogram, pixel mean/std and img/s."""
    counts: collections.Counter = collections.Counter()
    n, total, total_sq, shape = 0, 0.0, 0.0, None
    it.reset()
    start = time.time()
    for i, batch in enumerate(it):
        real = batch.data[0].shape[0] - batch.pad
        data = batch.data[0][:real]
        total += float(data.sum().asscalar())
        total_sq += float((data * data).sum().asscalar())
        counts.update(batch.label[0][:real].asnumpy().astype(int).tolist())
        n, shape = n + real, batch.data[0].shape
        if max_batches and i + 1 >= max_batches:
            break
    elapsed = time.time() - start
    size = n * int(np.prod(shape[1:])) if shape else 1
    mean = total / max(size, 1)
    return dict(images=n, batch_shape=shape, labels=dict(sorted(counts.items())), mean=mean,
                std=(total_sq / max(size, 1) - mean ** 2) ** 0.5, img_per_s=n / max(elapsed, 1e-9))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Read a .rec once with training augmentation "
                                                 "and report what was read and how fast.")
    parser.add_argument("rec", help="record file (its .idx must be beside it)")
    parser.add_argument("--dataset", default="imagenet", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--val", action="store_true", help="use the validation reader instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    preset = get_preset(args.dataset)
    try:
        check_rec(args.rec, preset.data_shape, preset.resize)
    except ValueError as e:
        parser.error(str(e))
    make = val_iter if args.val else train_iter
    report = read_report(make(args.rec, args.batch_size, args.dataset))
    log.info("read %(images)d images, batches of %(batch_shape)s, normalised mean %(mean).3f "
             "std %(std).3f, %(img_per_s).0f img/s", report)
    log.info("images per label: %s", report["labels"])


if __name__ == "__main__":
    main()
