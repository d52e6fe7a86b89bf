"""ONNX export, int8 quantisation, model card."""
