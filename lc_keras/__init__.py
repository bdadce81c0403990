"""lc_keras: learning-compression (LC) weight quantization for Keras 3.

Wrap a trained Keras model in `LCModel`, pick codebooks per layer, `fit` with
a `MuSchedule`, and take `quantized_model()` (or a TFLite file that stores
integer indices plus codebooks).
"""

from lc_keras import checks
from lc_keras import datasets
from lc_keras import files
from lc_keras import projections
from lc_keras.codebooks import AdaptiveQuantization
from lc_keras.codebooks import BinaryQuantization
from lc_keras.codebooks import FixedCodebook
from lc_keras.codebooks import PowersOfTwoQuantization
from lc_keras.codebooks import Quantization
from lc_keras.codebooks import ScaledBinaryQuantization
from lc_keras.codebooks import ScaledTernaryQuantization
from lc_keras.codebooks import TernaryQuantization
from lc_keras.codebooks import get as get_codebook
from lc_keras.export import export_quantized
from lc_keras.export import export_tflite
from lc_keras.export import inspect_tflite
from lc_keras.export import pack_indices
from lc_keras.export import unpack_indices
from lc_keras.kmeans import kmeans_1d
from lc_keras.kmeans import kmeans_1d_exact
from lc_keras.model import LCModel
from lc_keras.model import load_model
from lc_keras.quantized import QuantizedKernel
from lc_keras.runtime import expand_tflite
from lc_keras.runtime import load_interpreter
from lc_keras.schedule import BudgetGrid
from lc_keras.schedule import MuSchedule
from lc_keras.spec import compressible_kernels
from lc_keras.spec import walk_layers
from lc_keras.summary import FloatWeightProfile
from lc_keras.summary import LayerProfile
from lc_keras.summary import ModelProfile
from lc_keras.summary import compression_ratio
from lc_keras.summary import profile
from lc_keras.summary import summary

__version__ = "0.1.0"
