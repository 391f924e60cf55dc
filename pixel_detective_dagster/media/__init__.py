"""Media layer: image formats, hashing, probing, decoding, manifests and thumbnails. Imports catalog and storage."""
