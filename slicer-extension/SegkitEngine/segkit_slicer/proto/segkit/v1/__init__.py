"""Version 1 of the engine contract: `engine_pb2` (messages) and `engine_pb2_grpc` (stubs)."""
