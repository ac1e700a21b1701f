"""Backends: reference (float64 numpy oracle), torch, triton."""
