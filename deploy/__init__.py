"""Deployment helpers and configs (serving, Ray cluster, MLflow stack)."""
