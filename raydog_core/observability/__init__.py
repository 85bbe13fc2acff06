"""What the observability node runs besides Prometheus: Grafana provisioning (`grafana`)."""
