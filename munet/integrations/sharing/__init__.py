"""Sharing trained bundles between hospitals: zoo checks, packaging, checksums, config review.

Used by the scripts; the workflows import only ``checksums.sha256_of`` (the bundle's one file hash,
for weights and datalists). A packaged bundle carries the whole ``bundle/`` folder.
"""
