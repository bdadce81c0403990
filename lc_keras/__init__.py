"""lc_keras: learning-compression (LC) weight quantization for Keras 3.

Wrap a trained Keras model in `LCModel`, pick codebooks per layer, `fit` with
a `MuSchedule`, and take `quantized_model()` (or a TFLite file that stores
integer indices plus codebooks).

The names below are the public API (`__all__`); the submodules `datasets`
and `projections` are public namespaces too. Lower-level modules
(`lc_keras.packing`, `lc_keras.tflite_file`, `lc_keras.files`,
`lc_keras.checks`, `lc_keras.state`, ...) are importable by their module
path.
"""

from lc_keras import datasets
from lc_keras import projections
from lc_keras.callbacks import LCCallback
from lc_keras.codebooks import AdaptiveQuantization
from lc_keras.codebooks import BinaryQuantization
from lc_keras.codebooks import FixedCodebook
from lc_keras.codebooks import PowersOfTwoQuantization
from lc_keras.codebooks import Quantization
from lc_keras.codebooks import ScaledBinaryQuantization
from lc_keras.codebooks import ScaledTernaryQuantization
from lc_keras.codebooks import TernaryQuantization
from lc_keras.codebooks import UniformQuantization
from lc_keras.codebooks import get as get_codebook
from lc_keras.export import TFLiteExport
from lc_keras.export import export_quantized
from lc_keras.export import export_tflite
from lc_keras.kmeans import kmeans_1d
from lc_keras.kmeans import kmeans_1d_exact
from lc_keras.model import LCModel
from lc_keras.model import load_model
from lc_keras.packing import ExportedKernel
from lc_keras.quantized import QuantizedKernel
from lc_keras.runtime import expand_tflite
from lc_keras.runtime import load_interpreter
from lc_keras.schedule import BudgetGrid
from lc_keras.schedule import MuSchedule
from lc_keras.spec import compressible_kernels
from lc_keras.spec import walk_layers
from lc_keras.state import LCState
from lc_keras.summary import FloatWeightProfile
from lc_keras.summary import LayerProfile
from lc_keras.summary import ModelProfile
from lc_keras.summary import compression_ratio
from lc_keras.summary import profile
from lc_keras.summary import summary
from lc_keras.tflite_file import PackedKernelInfo
from lc_keras.tflite_file import TensorInfo
from lc_keras.tflite_file import TFLiteSummary
from lc_keras.tflite_file import inspect_tflite

__version__ = "0.1.0"

__all__ = [
    # Training
    "LCModel",
    "LCState",
    "MuSchedule",
    "BudgetGrid",
    "LCCallback",
    "load_model",
    # Codebooks (C steps)
    "Quantization",
    "AdaptiveQuantization",
    "BinaryQuantization",
    "ScaledBinaryQuantization",
    "TernaryQuantization",
    "ScaledTernaryQuantization",
    "PowersOfTwoQuantization",
    "UniformQuantization",
    "FixedCodebook",
    "get_codebook",
    "projections",
    "kmeans_1d",
    "kmeans_1d_exact",
    # What is compressed
    "compressible_kernels",
    "walk_layers",
    # Results and reports
    "QuantizedKernel",
    "profile",
    "summary",
    "compression_ratio",
    "ModelProfile",
    "LayerProfile",
    "FloatWeightProfile",
    # TFLite files
    "export_tflite",
    "export_quantized",
    "TFLiteExport",
    "ExportedKernel",
    "inspect_tflite",
    "TFLiteSummary",
    "TensorInfo",
    "PackedKernelInfo",
    "expand_tflite",
    "load_interpreter",
    # Data
    "datasets",
]
