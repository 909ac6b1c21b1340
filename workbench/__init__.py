"""Inference Workbench: profile, compress, batch, cost and serve ML models."""
