"""Task heads: one module per head behind the interface of fednlp.tasks.base."""
