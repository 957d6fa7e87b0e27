"""gRPC servicers (thin: convert messages, await one domain call) and the interceptor."""
