"""StableQueue coordinator: the gRPC server that owns the queue, the model library and the nodes."""
