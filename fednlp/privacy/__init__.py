"""Differential privacy: client-level DP-FedAvg and sample-level DP-SGD, accounted with dp-accounting."""
