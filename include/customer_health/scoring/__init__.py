"""Scoring for customer health."""
