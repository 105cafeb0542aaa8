"""The federated runtime: cohorts, the round loop, local training, communicators, devices."""
