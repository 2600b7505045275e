"""Zero-shot classification: class embeddings, open set, the adapter learnt from examples, spec lint."""
