"""Model loading and inference: open_clip image/text encoders and transformers captioners."""
