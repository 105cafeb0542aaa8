"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017), with a server learning rate (1.0 = the paper's rule)."""

from fednlp.algorithms.interface import Algorithm
from fednlp.algorithms.registry import register_algorithm


@register_algorithm("fedavg")
class FedAvg(Algorithm):
    """Weighted mean of the client models (weights from the sampler), times --server-lr."""
