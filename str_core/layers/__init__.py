"""STR layers, threshold functions and whole-model conversion."""

from str_core.layers.convert import (
    PRUNABLE_TYPES,
    densify,
    prunable_layers,
    sparsify,
    weight_parameter,
)
from str_core.layers.str_layers import STR_LAYER_TYPES, STRConv1d, STRConv2d, STRLinear, STRMixin
from str_core.layers.threshold import (
    THRESHOLD_FUNCTIONS,
    ThresholdFn,
    get_threshold_fn,
    register_threshold_fn,
    soft_threshold,
    soft_threshold_reference,
)

__all__ = [
    "PRUNABLE_TYPES",
    "STR_LAYER_TYPES",
    "THRESHOLD_FUNCTIONS",
    "STRConv1d",
    "STRConv2d",
    "STRLinear",
    "STRMixin",
    "ThresholdFn",
    "densify",
    "get_threshold_fn",
    "prunable_layers",
    "register_threshold_fn",
    "soft_threshold",
    "soft_threshold_reference",
    "sparsify",
    "weight_parameter",
]
