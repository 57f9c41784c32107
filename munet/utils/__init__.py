"""Low-level helpers with no dependency on the rest of the package: file hashing, process-group rank."""
