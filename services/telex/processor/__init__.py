"""The processor: raw updates in, normalised, deduplicated CloudEvents out."""
