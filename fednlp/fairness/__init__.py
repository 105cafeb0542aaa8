"""Fairness of a trained model: counterfactual word-swap evaluation and group metrics of text classifiers.

pairs: the protected-term lists; counterfactual: rewriting texts and the flip statistics; group_metrics:
per-group accuracy and equal opportunity; model_outputs: the saved run's class probabilities; report: the
`fednlp fairness` command's report and files.
"""
