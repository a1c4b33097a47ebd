"""T3 (text -> speech tokens): one decoding path, batched, for every request."""
