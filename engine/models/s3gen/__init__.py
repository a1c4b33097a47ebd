"""S3Gen (speech tokens -> 24 kHz audio): streaming flow and HiFT, noise tapes, passes over jobs."""
