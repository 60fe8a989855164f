"""Effective receptive fields and Grad-CAM of TransXNet models (drawn by
``tools/analysis_tools/visualize_erf.py`` and ``visualize_cam.py``)."""
from .layers import (SHORT_NAMES, Layer, accepted_names_help, check_inside,
                     describe_model, resolve_layers)
from .maps import (ERF_THRESHOLDS, erf_maps, erf_score, erf_table, grad_cam,
                   input_normalisation, list_images, load_image, log_scaled,
                   overlay, to_input)

__all__ = [
    'SHORT_NAMES', 'Layer', 'accepted_names_help', 'check_inside',
    'describe_model', 'resolve_layers', 'ERF_THRESHOLDS', 'erf_maps',
    'erf_score', 'erf_table', 'grad_cam', 'input_normalisation',
    'list_images', 'load_image', 'log_scaled', 'overlay', 'to_input'
]
