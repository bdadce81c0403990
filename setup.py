from setuptools import find_packages
from setuptools import setup

setup(
    name="lc_keras",
    version="0.1.0",
    description="Learning-compression (LC) weight quantization for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lc_keras", "lc_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15",
        "numpy",
        "absl-py",
        "ai-edge-litert",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis", "tensorboard"],
        "plot": ["matplotlib"],
        # ai-edge-quantizer: the post-training rows of
        # tools/benchmark_export.py --native.
        "bench": ["scikit-learn", "matplotlib", "ai-edge-quantizer==0.10.*"],
    },
)
