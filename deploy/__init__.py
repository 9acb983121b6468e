"""Deployment: Dockerfiles and Kubernetes manifests, and the same topology run locally."""
