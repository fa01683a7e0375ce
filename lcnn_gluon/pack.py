"""Pack image folders and MNIST into RecordIO: the engine behind ``tools/im2rec.py``.

Lists are written and read in the format of MXNet's ``im2rec.py`` (``index \\t
label(s) \\t relative path``), with the same walk order and the same seeded
shuffle, so a ``.lst`` from either tool packs with the other. Images are
encoded by worker processes; JPEGs go through libjpeg-turbo via
``simplejpeg`` (cheaper than OpenCV's wrapper), everything else through OpenCV.
This module does not import ``mxnet``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import random
import sys
import time
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

# Images whose header claims more pixels than this are skipped with a warning before any
# decoding (a 2 KB JPEG can claim 60000x60000: 10 GB decoded). 2^28 pixels = 16384x16384,
# far above any photo a network is trained on. OpenCV's own limit (2^30 by default) is set
# to the same for the formats it decodes; it reads the variable when it is first used.
MAX_IMAGE_PIXELS = 1 << 28
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from tqdm import tqdm  # noqa: E402

from . import atomic, processes  # noqa: E402
from .mnist import load_mnist  # noqa: E402
from .recordio import IndexedRecordWriter, pack_header  # noqa: E402

log = logging.getLogger(__name__)
Item = Tuple[int, str, Tuple[float, ...]]  # (index, path relative to root, labels)
MAX_RECORD_ID = 2 ** 64  # list indices become the records' uint64 ids


class PackError(ValueError):
    """Bad input to the packer; the message names the file or flag."""


# ---------------------------------------------------------------- image lists
def list_images(root: str, recursive: bool, exts: Sequence[str]) -> Tuple[List[Item], List[str]]:
    """Walk ``root`` as MXNet's ``im2rec.py --list`` does.

    Returns the items (unshuffled) and the class names (relative folder paths) in
    label order. With ``recursive`` each folder that holds images gets the next
    label, in sorted walk order; a folder without images gets none (a warning
    names it). Without it, the images directly in ``root`` all get label 0.
    """
    if not os.path.isdir(root):
        raise PackError(f"image root {root!r} does not exist or is not a folder")
    exts = {e.lower() for e in exts}
    items: List[Item] = []
    classes: List[str] = []
    walk = os.walk(root, followlinks=True) if recursive else [(root, [], os.listdir(root))]
    for path, dirs, files in walk:
        dirs.sort()
        found = False
        for fname in sorted(files):
            fpath = os.path.join(path, fname)
            if os.path.splitext(fname)[1].lower() in exts and os.path.isfile(fpath):
                _check_listable(fpath)
                if not found:
                    classes.append(os.path.relpath(path, root))
                    found = True
                items.append((len(items), os.path.relpath(fpath, root), (float(len(classes) - 1),)))
        if recursive and not found and not dirs:
            log.warning("class folder %s holds no images with extensions %s: it gets no label",
                        path, sorted(exts))
    if not items:
        raise PackError(f"no images with extensions {sorted(exts)} under {root!r}")
    return items, classes


def _check_listable(path: str) -> None:
    """A ``.lst`` line holds the path as UTF-8 text between a tab and a newline."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PackError(f"file name {os.fsencode(path)!r} is not valid UTF-8: rename it "
                        "(a list file holds UTF-8 text)") from None
    if "\t" in path or "\n" in path or "\r" in path:
        raise PackError(f"file name {path!r} holds a tab or line break, which a list file "
                        "cannot hold: rename it")


def _write_text(path: str, lines: Iterable[str]) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)
    atomic.write_atomically(path, write)


def write_list(path: str, items: Iterable[Item]) -> None:
    """Write a ``.lst`` file (MXNet's format, ``%f`` labels), atomically."""
    _write_text(path, (f"{index}\t" + "".join(f"{x:f}\t" for x in labels) + f"{relpath}\n"
                       for index, relpath, labels in items))


def read_list(path: str) -> List[Item]:
    """Read a ``.lst`` file; a malformed line is an error naming file and line."""
    items = []
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PackError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if not line.strip():
            continue
        parts = [p.strip() for p in line.rstrip("\r").split("\t")]
        try:
            if len(parts) < 3:
                raise ValueError(f"{len(parts)} tab-separated fields, need at least 3")
            index = int(parts[0])
            if not 0 <= index < MAX_RECORD_ID:
                raise ValueError(f"index {index} is outside [0, 2^64)")
            items.append((index, parts[-1], tuple(float(x) for x in parts[1:-1])))
        except ValueError as e:
            raise PackError(f"{path}:{lineno}: bad list line {line.strip()!r}: {e}") from e
    if not items:
        raise PackError(f"{path}: list is empty")
    return items


def split_lists(items: List[Item], prefix: str, chunks: int, train_ratio: float,
                test_ratio: float) -> List[str]:
    """Write ``PREFIX[_i][_train|_val|_test].lst`` as MXNet's ``make_list``; return the paths."""
    written = []
    chunk_size = (len(items) + chunks - 1) // chunks
    for i in range(chunks):
        chunk = items[i * chunk_size:(i + 1) * chunk_size]
        stem = prefix + (f"_{i}" if chunks > 1 else "")
        sep, sep_test = int(chunk_size * train_ratio), int(chunk_size * test_ratio)
        if train_ratio == 1.0:
            parts = {stem + ".lst": chunk}
        else:
            parts = {stem + "_train.lst": chunk[sep_test:sep_test + sep]}
            if test_ratio:
                parts[stem + "_test.lst"] = chunk[:sep_test]
            if train_ratio + test_ratio < 1.0:
                parts[stem + "_val.lst"] = chunk[sep_test + sep:]
        empty = [path for path, part in parts.items() if not part]
        if empty:
            raise PackError(f"{empty[0]} would be empty ({len(items)} images in {chunks} chunks of "
                            f"{chunk_size}, --train-ratio {train_ratio}, --test-ratio {test_ratio}): "
                            "use fewer --chunks or other ratios")
        for path, part in parts.items():
            write_list(path, part)
            written.append(path)
    return written


def write_classes(path: str, classes: Sequence[str]) -> None:
    """Write the class map: one ``label \\t name`` line per class, atomically."""
    _write_text(path, (f"{i}\t{name}\n" for i, name in enumerate(classes)))


def shuffled(items: List[Item], seed: int) -> List[Item]:
    """Shuffle as MXNet's ``im2rec.py`` does (``random.seed(seed)``; default seed 100)."""
    items = list(items)
    random.seed(seed)
    random.shuffle(items)
    return items


# ---------------------------------------------------------------- encoding
@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """What ``im2rec.py`` does to each image (flags of the same names)."""

    root: str
    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    encoding: str = ".jpg"
    color: int = 1
    pass_through: bool = False
    pack_label: bool = False


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """``(height, width)`` a JPEG or PNG header claims, without decoding; None otherwise."""
    if data[:3] == b"\xff\xd8\xff":
        try:
            return tuple(simplejpeg.decode_jpeg_header(data)[:2])
        except ValueError:
            return None
    if data[:8] == PNG_SIGNATURE and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return height, width
    return None


def _decode(data: bytes, color: int) -> Optional[np.ndarray]:
    """Decode to HxWxC uint8 (BGR, or C=1 for ``color=0``); None if undecodable."""
    # EXIF-rotated and CMYK JPEGs go to OpenCV, which applies the orientation as MXNet's tool does.
    if color in (0, 1) and data[:3] == b"\xff\xd8\xff" and data.find(b"Exif\0\0", 0, 65536) < 0:
        try:
            if simplejpeg.decode_jpeg_header(data)[2] in ("Gray", "YCbCr"):
                return simplejpeg.decode_jpeg(data, colorspace="GRAY" if color == 0 else "BGR")
        except ValueError:
            return None  # corrupt JPEG: strict libjpeg-turbo refuses it
    img = cv2.imdecode(np.frombuffer(data, np.uint8), color)
    if img is not None and img.ndim == 2:
        img = img[:, :, None]
    return img


def _transform(img: np.ndarray, opts: EncodeOptions) -> np.ndarray:
    h, w = img.shape[:2]
    if opts.center_crop:
        m = abs(h - w) // 2
        img = img[m:m + w] if h > w else img[:, m:m + h]
        h, w = img.shape[:2]
    if opts.resize:
        size = (opts.resize, h * opts.resize // w) if h > w else (w * opts.resize // h, opts.resize)
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise ValueError(f"--resize {opts.resize} makes it {size[0]}x{size[1]} pixels, above the "
                             f"limit of {MAX_IMAGE_PIXELS}")
        img = cv2.resize(img, size)  # bilinear, as MXNet's tool
        if img.ndim == 2:
            img = img[:, :, None]
    return np.ascontiguousarray(img)


def _encode(img: np.ndarray, opts: EncodeOptions) -> bytes:
    if opts.encoding == ".jpg" and img.shape[2] in (1, 3):
        return simplejpeg.encode_jpeg(img, quality=opts.quality, colorsubsampling="420",
                                      colorspace="GRAY" if img.shape[2] == 1 else "BGR")
    param = cv2.IMWRITE_JPEG_QUALITY if opts.encoding == ".jpg" else cv2.IMWRITE_PNG_COMPRESSION
    ok, buf = cv2.imencode(opts.encoding, img, [param, opts.quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode as {opts.encoding}")
    return buf.tobytes()


def encode_item(item: Item, opts: EncodeOptions) -> Tuple[Optional[bytes], Optional[str]]:
    """Read, transform and pack one list item. Returns ``(record, None)`` or ``(None, why)``."""
    index, relpath, labels = item
    path = os.path.join(opts.root, relpath)
    label = labels if (opts.pack_label and len(labels) > 1) else labels[0]
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            return None, f"{path}: empty file"
        if opts.pass_through:
            return pack_header(label, index, data), None
        size = header_size(data)
        if size and size[0] * size[1] > MAX_IMAGE_PIXELS:
            return None, (f"{path}: header claims {size[1]}x{size[0]} pixels, above the limit of "
                          f"{MAX_IMAGE_PIXELS} (lcnn_gluon.pack.MAX_IMAGE_PIXELS)")
        img = _decode(data, opts.color)
        if img is None or img.size == 0:
            return None, f"{path}: not a readable image"
        return pack_header(label, index, _encode(_transform(img, opts), opts)), None
    except (OSError, ValueError, cv2.error) as e:
        return None, f"{path}: {e}"


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend


def _encoded(item: Item, opts: EncodeOptions) -> Tuple[int, Tuple[Optional[bytes], Optional[str]]]:
    return item[0], encode_item(item, opts)


def _encoded_in_processes(items: List[Item], opts: EncodeOptions,
                          num_workers: int) -> Iterator[Tuple[int, Tuple[Optional[bytes], Optional[str]]]]:
    """``(index, (record, why))`` of every item, in list order, encoded by ``num_workers``
    processes (:func:`lcnn_gluon.processes.ordered_map`)."""
    try:
        yield from processes.ordered_map(functools.partial(_encoded, opts=opts), items, num_workers,
                                         init=_init_worker)
    except processes.WorkerDied:
        raise PackError("an image encoding process died (out of memory?); nothing written") from None


def pack_items(items: List[Item], rec_path: str, idx_path: str, opts: EncodeOptions,
               num_workers: int) -> Tuple[int, int]:
    """Encode ``items`` with ``num_workers`` processes into ``rec_path``/``idx_path``.

    Records keep list order. Returns ``(written, skipped)``; each skipped image
    is named in a warning. Nothing is left at the final paths if this fails.
    """
    start = time.time()
    skipped = 0
    bar = tqdm(total=len(items), desc=os.path.basename(rec_path), unit="img",
               disable=None, mininterval=0.5, file=sys.stderr)
    if num_workers > 1:
        results = _encoded_in_processes(items, opts, num_workers)
    else:
        results = (_encoded(item, opts) for item in items)
    with IndexedRecordWriter(rec_path, idx_path) as writer, contextlib.closing(results):
        try:
            for index, (record, why) in results:
                if record is None:
                    log.warning("skipped %s", why)
                    skipped += 1
                else:
                    writer.write(index, record)
                bar.update(1)
            if not writer.count:  # leaves any earlier pair of these names as it was
                raise PackError(f"{rec_path}: none of the {len(items)} images could be packed "
                                "(each is named above); nothing written")
        finally:
            bar.close()
    elapsed = time.time() - start
    log.info("%s: %d images in %.1f s (%.0f img/s), %d skipped", rec_path, writer.count,
             elapsed, len(items) / max(elapsed, 1e-9), skipped)
    return writer.count, skipped


def find_lists(prefix: str) -> List[str]:
    """Every ``PREFIX*.lst`` beside the prefix (or, as MXNet's tool, inside it if it is a folder)."""
    folder = os.path.dirname(prefix)
    if not os.path.isdir(folder):
        raise PackError(f"output folder {folder!r} does not exist")

    def lists_in(where: str) -> List[str]:
        names = sorted(os.path.join(where, n) for n in os.listdir(where))
        return [n for n in names if n.startswith(prefix) and n.endswith(".lst") and os.path.isfile(n)]

    lists = lists_in(folder) or (lists_in(prefix) if os.path.isdir(prefix) else [])
    if not lists:
        raise PackError(f"no list file {prefix}*.lst: create one with --list first")
    return lists


# ---------------------------------------------------------------- MNIST
def pack_mnist(prefix: str, root: str, seed: int, shuffle: bool = True) -> dict:
    """Pack MNIST idx files in ``root`` into ``PREFIX_train`` and ``PREFIX_val`` ``.rec/.idx``.

    Images are stored as lossless 1-channel PNG, label = digit, record id = the
    image's index in its idx file; record order is shuffled with ``seed``.
    Returns ``{split: number of records}``.
    """
    splits = load_mnist(root)
    counts = {}
    for split, (images, labels) in splits.items():
        order = np.random.RandomState(seed).permutation(len(images)) if shuffle else range(len(images))
        rec, idx = f"{prefix}_{split}.rec", f"{prefix}_{split}.idx"
        with IndexedRecordWriter(rec, idx) as writer:
            for i in tqdm(order, desc=os.path.basename(rec), unit="img", disable=None):
                ok, png = cv2.imencode(".png", images[i], [cv2.IMWRITE_PNG_COMPRESSION, 1])
                writer.write(int(i), pack_header(float(labels[i]), int(i), png.tobytes()))
        counts[split] = writer.count
        log.info("%s: %d digits", rec, writer.count)
    write_classes(prefix + ".classes.txt", [str(d) for d in range(10)])
    return counts
