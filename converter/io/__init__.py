"""The checkpoint I/O layer: safetensors headers, byte ranges, sharded indexes. Nothing model-specific."""
