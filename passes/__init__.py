"""Passes over the pccc IR: registry, pipelines, instruments, one module per pass."""
