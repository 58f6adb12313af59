"""Sources for customer health."""
