"""What every run shares, federated or centralized: the session (data, task, features, model, device, run
directory, record), local training, evaluation, the device choice, and the named random streams.

`fednlp/federation/` builds the round loop on top of it; `fednlp/centralized.py` uses it directly.
"""
