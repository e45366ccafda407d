"""Kubernetes deployment of a generated Triton repository (`glmtrt deploy k8s`)."""
