"""What operators see: metrics, health, the HTTP server, logs, process settings."""
