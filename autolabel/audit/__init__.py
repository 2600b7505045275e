"""Dataset audit over cached embeddings: duplicates and split leakage, label issues, outliers, class balance."""
