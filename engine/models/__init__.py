"""Torch: the models of a checkpoint and the streaming T3 and S3Gen code. Never imports zmq or broker."""
