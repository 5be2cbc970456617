"""Voice activity detection service: silero-vad (ONNX, no torch) over a
bidirectional gRPC stream, one model per process and one state per stream."""
