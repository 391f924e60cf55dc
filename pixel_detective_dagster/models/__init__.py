"""Models layer: CLIP and caption model loading, device and batch sizing, inference over images, feature cache."""
