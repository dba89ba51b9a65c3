"""What every service process is assembled from: config, logging, metrics, validation, the gRPC server."""
