"""Contract tests: the product and the sandbox against API definitions we did not write."""
