"""ONNX export (``export.py``, split per model kind by ``tasks.py``) and
onnxruntime inference (``runtime.py``), used by ``tools/deployment/``."""
from .export import (DYNAMIC_AXES, INPUT_NAME, MIN_SIDE, OPSET, RTOL,
                     check_shape, dynamic_example_size, export,
                     load_model, load_torch_state, torch_state_path)
from .runtime import (OnnxModel, differences, predict_onnx, torch_outputs,
                      verify_sizes)
from .tasks import (Classification, RawOutputs, Segmentation,
                    SingleStageDetection, Task, TwoStageDetection,
                    predict_torch, prepare, task_for,
                    test_pipeline)

__all__ = [
    'DYNAMIC_AXES', 'INPUT_NAME', 'MIN_SIDE', 'OPSET', 'RTOL', 'check_shape',
    'dynamic_example_size', 'export', 'load_model', 'load_torch_state',
    'torch_state_path', 'OnnxModel', 'differences', 'predict_onnx',
    'torch_outputs', 'verify_sizes', 'Classification', 'RawOutputs',
    'Segmentation', 'SingleStageDetection', 'Task', 'TwoStageDetection',
    'predict_torch', 'prepare', 'task_for',
    'test_pipeline'
]
