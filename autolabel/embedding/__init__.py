"""Images and text to embeddings: checkpoints, models (torch, int8), decoding, the cache, the Session."""
