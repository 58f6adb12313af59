"""Sandbox for customer health."""
