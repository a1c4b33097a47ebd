"""The T3 and S3Gen worker processes: the only engine code that imports zmq or broker."""
