#!/usr/bin/env python3
"""Pack image folders or MNIST idx files into shuffled RecordIO (``.rec`` + ``.idx``).

Command-line compatible with MXNet's ``tools/im2rec.py``:

    python tools/im2rec.py --list --recursive --train-ratio 0.9 data/imgs ~/images
    python tools/im2rec.py --resize 256 --quality 95 data/imgs ~/images

plus MNIST:

    python tools/im2rec.py --mnist data/mnist data/mnist-sample

Differences from MXNet's tool: packing uses every core by default
(``--num-thread``), the shuffle seed is a flag (``--seed``, default 100 as
MXNet's), a class map ``PREFIX.classes.txt`` is written beside the list,
unreadable images are skipped with a warning naming each and a count at the end
(with any thread count), and outputs appear only once complete.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lcnn_gluon import mnist, pack  # noqa: E402  (path set above for use from a checkout)

log = logging.getLogger("im2rec")


def add_list_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Options for creating image lists")
    g.add_argument("--list", action="store_true",
                   help="create PREFIX.lst (or _train/_val/_test lists) by walking ROOT "
                        "instead of packing existing lists")
    g.add_argument("--exts", nargs="+", default=[".jpeg", ".jpg", ".png"],
                   help="acceptable image extensions")
    g.add_argument("--chunks", type=int, default=1, help="number of chunks")
    g.add_argument("--train-ratio", type=float, default=1.0, help="fraction of images for training")
    g.add_argument("--test-ratio", type=float, default=0.0, help="fraction of images for testing")
    g.add_argument("--recursive", action="store_true",
                   help="walk sub-folders, one label per folder that holds images")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep walk order instead of shuffling")
    g.add_argument("--seed", type=int, default=100, help="shuffle seed (MXNet's im2rec uses 100)")


def add_pack_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Options for creating the record files")
    g.add_argument("--pass-through", action="store_true", help="store file bytes unchanged")
    g.add_argument("--resize", type=int, default=0,
                   help="resize the shorter edge to this many pixels (0: keep size)")
    g.add_argument("--center-crop", action="store_true", help="crop the centre square first")
    g.add_argument("--quality", type=int, default=None,
                   help="JPEG quality 1-100 (default 95) or PNG compression 0-9 (default 3)")
    g.add_argument("--num-thread", type=int, default=os.cpu_count() or 1,
                   help="encoding processes (default: all cores)")
    g.add_argument("--color", type=int, default=1, choices=[-1, 0, 1],
                   help="1: colour, 0: grayscale, -1: unchanged (alpha kept)")
    g.add_argument("--encoding", default=".jpg", choices=[".jpg", ".png"], help="stored format")
    g.add_argument("--pack-label", action="store_true",
                   help="store all labels of a list line (a vector label) in each record")
    g.add_argument("--mnist", action="store_true",
                   help="ROOT holds MNIST idx files (raw or .gz): write PREFIX_train and "
                        "PREFIX_val .rec/.idx, pixels stored losslessly as PNG")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("prefix", help="prefix of the list and record files")
    parser.add_argument("root", help="folder holding the images (or MNIST idx files)")
    add_list_args(parser)
    add_pack_args(parser)
    args = parser.parse_args(argv)
    if args.quality is None:
        args.quality = 95 if args.encoding == ".jpg" else 3
    limits = (1, 100) if args.encoding == ".jpg" else (0, 9)
    checks = [
        (limits[0] <= args.quality <= limits[1],
         f"--quality {args.quality}: must be in {limits[0]}..{limits[1]} for --encoding {args.encoding}"),
        (args.resize >= 0, f"--resize {args.resize}: must be >= 0"),
        (args.num_thread >= 1, f"--num-thread {args.num_thread}: must be >= 1"),
        (args.chunks >= 1, f"--chunks {args.chunks}: must be >= 1"),
        (0 < args.train_ratio <= 1, f"--train-ratio {args.train_ratio}: must be in (0, 1]"),
        (0 <= args.test_ratio < 1 and args.train_ratio + args.test_ratio <= 1,
         f"--test-ratio {args.test_ratio}: must be >= 0 with --train-ratio + --test-ratio <= 1"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    args.prefix = os.path.abspath(args.prefix)
    args.root = os.path.abspath(args.root)
    return args


def make_lists(args: argparse.Namespace) -> None:
    items, classes = pack.list_images(args.root, args.recursive, args.exts)
    if args.shuffle:
        items = pack.shuffled(items, args.seed)
    for path in pack.split_lists(items, args.prefix, args.chunks, args.train_ratio, args.test_ratio):
        log.info("wrote %s", path)
    pack.write_classes(args.prefix + ".classes.txt", classes)
    log.info("%d images in %d classes; class map %s.classes.txt", len(items), len(classes), args.prefix)


def pack_lists(args: argparse.Namespace) -> None:
    if not os.path.isdir(args.root):
        raise pack.PackError(f"image root {args.root!r} does not exist or is not a folder")
    opts = pack.EncodeOptions(root=args.root, resize=args.resize, center_crop=args.center_crop,
                              quality=args.quality, encoding=args.encoding, color=args.color,
                              pass_through=args.pass_through, pack_label=args.pack_label)
    total_skipped = 0
    for lst in pack.find_lists(args.prefix):
        stem = os.path.splitext(lst)[0]
        log.info("packing %s", lst)
        _, skipped = pack.pack_items(pack.read_list(lst), stem + ".rec", stem + ".idx", opts,
                                     args.num_thread)
        total_skipped += skipped
    if total_skipped:
        log.warning("%d unreadable images were skipped (named above)", total_skipped)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: temporary files removed, workers stopped


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.mnist:
            pack.pack_mnist(args.prefix, args.root, args.seed, args.shuffle)
        elif args.list:
            make_lists(args)
        else:
            pack_lists(args)
    except (pack.PackError, mnist.IdxError, OSError) as e:  # OSError: unwritable output folder, full disk
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: no partial output was kept")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
