"""str_core: Soft Threshold Reparameterization (STR, arXiv 2002.03231) in pure PyTorch.

Layers, models, data, a callback-driven trainer, and sparsity/FLOP accounting. Imports torch and
numpy only (scikit-learn and mnist1d are imported lazily by the built-in dataset loaders); never
ray, mlflow, fastapi or sqlalchemy.
"""

__version__ = "0.1.0"
