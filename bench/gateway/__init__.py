"""Gateway benchmark: streams through the backend vs. the runner direct (`make bench-gateway`)."""
