"""Quality measures and the seed-style baseline that streamed audio is compared against."""
