"""fednlp: federated learning benchmarks for NLP."""
__version__ = "0.1.0"
