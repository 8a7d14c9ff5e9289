"""tfvssl: self-supervised video representation learning in TensorFlow 2 / Keras 3."""

import setuptools

setuptools.setup(
    name="tfvssl",
    version="0.1.0",
    description=(
        "Self-supervised video representation learning (DPC, MemDPC, temporal CPC, "
        "Pace prediction, VCOP) for TensorFlow 2 / Keras 3."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["tfvssl", "tfvssl.*"]),
    install_requires=[
        # TF 2.21 is the tested release; Keras 3 is its Keras.
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        # TF 2.21 no longer depends on TensorBoard; tf.summary needs it.
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        # PyAV bundles FFmpeg; 19.x needs Python >= 3.12.
        "av>=14,<19",
        # Plots (training curves, t-SNE, confusion matrices, retrieval grids); Pillow, which
        # the tests compare resizes with, comes with matplotlib.
        "matplotlib>=3.8,<4",
        # t-SNE of the retrieval features (`tfvssl.plots`); the tests' linear separability check.
        "scikit-learn>=1.3,<2",
    ],
    extras_require={
        # CUDA libraries for NVIDIA GPUs, pulled in by TensorFlow itself.
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # Optical flow for `tfvssl.prepare --modality=flow` (TV-L1 needs the contrib build).
        "flow": ["opencv-contrib-python-headless>=4.8,<6"],
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4"],
        # gRPC stubs for export/client.py (TF Serving's PredictionService).
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
