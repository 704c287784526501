"""ONNX, written once for the detector and the embedder: ``session`` (onnxruntime sessions:
threads and providers), ``export`` (torch -> ONNX, kept only when onnxruntime agrees with torch)
and ``quantization`` (int8 graphs, used only past their guard)."""
