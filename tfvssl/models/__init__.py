"""Backbones, shared layers and one module per self-supervised method."""
