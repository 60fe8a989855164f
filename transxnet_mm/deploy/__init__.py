"""ONNX export of our detectors, segmentors and classifiers
(``export.py``), how each kind of model is split between the ONNX file and
PyTorch (``tasks.py``), and inference of the files with onnxruntime
(``runtime.py``). Used by ``tools/deployment/``."""
from .export import (DYNAMIC_AXES, INPUT_NAME, MIN_SIDE, OPSET, RTOL,
                     check_shape, dynamic_example_size, export,
                     load_model, load_torch_state, torch_state_path)
from .runtime import (OnnxModel, differences, predict_onnx, torch_outputs,
                      verify_sizes)
from .tasks import (Classification, RawOutputs, Segmentation,
                    SingleStageDetection, Task, TwoStageDetection,
                    build_visualizer, predict_torch, prepare, task_for,
                    test_pipeline)

__all__ = [
    'DYNAMIC_AXES', 'INPUT_NAME', 'MIN_SIDE', 'OPSET', 'RTOL', 'check_shape',
    'dynamic_example_size', 'export', 'load_model', 'load_torch_state',
    'torch_state_path', 'OnnxModel', 'differences', 'predict_onnx',
    'torch_outputs', 'verify_sizes', 'Classification', 'RawOutputs',
    'Segmentation', 'SingleStageDetection', 'Task', 'TwoStageDetection',
    'build_visualizer', 'predict_torch', 'prepare', 'task_for',
    'test_pipeline'
]
