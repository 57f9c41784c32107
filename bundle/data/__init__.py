"""Data utilities for the MUNet bundle (synthetic demo data, loaders, transforms)."""
