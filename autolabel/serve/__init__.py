"""`autolabel serve`: a Label Studio ML backend that predicts with the spec and learns from every annotation."""
