"""Federated algorithms and client samplers, behind registries."""
