"""Text generation (the C-MLM study, `studies/cmlm`): parallel data, the conditional masked LM teacher, its
per-token top-k soft labels, the encoder-decoder student and its KD loss, ONNX export, BLEU."""
