"""Running hip3 as a service: log rotation, the service manager's notifications, readiness probes."""
