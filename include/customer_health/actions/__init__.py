"""Actions for customer health."""
