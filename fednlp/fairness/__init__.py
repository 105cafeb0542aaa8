"""Fairness of a trained model: counterfactual word-swap evaluation, group metrics, prediction sensitivity and CEAT.

pairs: the protected-term lists; counterfactual: rewriting texts and the flip statistics; group_metrics:
per-group accuracy and equal opportunity; model_outputs: the saved run's class probabilities; sensitivity and
sensitivity_report: accumulated prediction sensitivity; ceat and ceat_report: the contextualized embedding
association test; run_task: which metric measures which run; report and commands: the `fednlp fairness`
command's report and files.
"""
