"""Shared basics below drivers, daemon and clients: the error hierarchy and the
hemoglobin extinction table."""
