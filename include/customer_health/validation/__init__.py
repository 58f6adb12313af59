"""Validation for customer health."""
