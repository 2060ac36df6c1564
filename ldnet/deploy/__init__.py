"""Deployment files: ONNX export (float, fixed or dynamic batch) and int8 static quantization."""
