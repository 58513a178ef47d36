"""What applications run: the rollout rule and the cached flag client (no loader, reconciler or click)."""
