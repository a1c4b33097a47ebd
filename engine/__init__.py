"""Model side of the Chatterbox streaming server: checkpoints, streaming T3 and S3Gen, workers."""
