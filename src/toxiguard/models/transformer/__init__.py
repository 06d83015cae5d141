"""The fine-tuned transformer: model, training loop, windows over long comments, ONNX inference."""
