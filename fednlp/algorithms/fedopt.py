"""FedOpt: an optimizer on the server, fed the negated aggregated client update as a pseudo-gradient.

`fedadam`, `fedyogi`, `fedadagrad` follow Reddi et al., "Adaptive Federated Optimization", ICLR 2021,
Algorithm 2, to the letter (no bias correction, tau outside the square root, v_{-1} = tau^2);
`fedopt` runs a named torch optimizer instead (FedNLP's FedOPT runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from fednlp.algorithms.interface import Algorithm, algorithm_option
from fednlp.algorithms.registry import register_algorithm
from fednlp.config import TrainConfig
from fednlp.errors import UserError


def _beta1() -> float:
    return algorithm_option("fedadam/fedyogi/fedadagrad/fedopt: first-moment decay (default 0.9)", default=0.9)


def _beta2() -> float:
    return algorithm_option("fedadam/fedyogi/fedopt: second-moment decay (default 0.99)", default=0.99)


def _tau() -> float:
    return algorithm_option("fedadam/fedyogi/fedadagrad: adaptivity constant tau (default 1e-3); fedopt: the torch "
                            "optimizer's eps", default=1e-3)


@dataclass(frozen=True)
class AdaptiveOptions:
    beta1: float = _beta1()
    beta2: float = _beta2()
    tau: float = _tau()


@dataclass(frozen=True)
class FedOptOptions:
    server_optimizer: str = algorithm_option("fedopt: torch optimizer on the server: sgd (default), adam, adamw, "
                                             "adagrad", default="sgd")
    server_momentum: float = algorithm_option("fedopt with sgd: server momentum (default 0)", default=0.0)
    beta1: float = _beta1()
    beta2: float = _beta2()
    tau: float = _tau()


class AdaptiveServer(Algorithm):
    """Reddi et al.'s Algorithm 2, with Delta_t the aggregated update and eta = --server-lr:

        m_t     = beta1 m_{t-1} + (1 - beta1) Delta_t             (m_{-1} = 0)
        v_t     = second_moment(v_{t-1}, Delta_t^2)                (v_{-1} = tau^2)
        x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)

    The paper only asks v_{-1} >= tau^2; we take the smallest value it allows, so the first steps adapt
    fully to the observed updates. Subclasses give `second_moment`, updating v in place.
    """

    default_server_lr = None
    Options = AdaptiveOptions

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        raise NotImplementedError

    def server_step(self, global_flat: torch.Tensor, mean_update: torch.Tensor, ctx: Any) -> None:
        p = self.options
        if self.m is None or self.v is None:
            self.m = torch.zeros_like(global_flat)
            self.v = torch.full_like(global_flat, p.tau**2)
        elif self.m.device != global_flat.device:  # state loaded from a checkpoint onto the CPU
            self.m, self.v = self.m.to(global_flat.device), self.v.to(global_flat.device)
        delta = mean_update
        self.m.mul_(p.beta1).add_(delta, alpha=1 - p.beta1)
        self.second_moment(self.v, delta * delta)
        global_flat.addcdiv_(self.m, self.v.sqrt().add_(p.tau), value=self.server_lr)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.m is None else {"m": self.m, "v": self.v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = state["m"].clone() if "m" in state else None
        self.v = state["v"].clone() if "v" in state else None


@register_algorithm("fedadam")
class FedAdam(AdaptiveServer):
    """Reddi et al.'s FedAdam: v = beta2 v + (1 - beta2) Delta^2 (no bias correction)."""

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.mul_(self.options.beta2).add_(delta_sq, alpha=1 - self.options.beta2)


@register_algorithm("fedyogi")
class FedYogi(AdaptiveServer):
    """Reddi et al.'s FedYogi: v = v - (1 - beta2) Delta^2 sign(v - Delta^2)."""

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.addcmul_(delta_sq, torch.sign(v - delta_sq), value=-(1 - self.options.beta2))


@register_algorithm("fedadagrad")
class FedAdagrad(AdaptiveServer):
    """Reddi et al.'s FedAdagrad: v = v + Delta^2 (beta2 unused; beta1 still drives m)."""

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> None:
        v.add_(delta_sq)


# name -> (the global weights, config) -> a torch optimizer over them. Each passes only the arguments its
# class takes: FedML built every server optimizer with a momentum argument, so its Adam never ran.
ServerOptimizerFactory = Callable[[list[torch.Tensor], FedOptOptions, float], torch.optim.Optimizer]
SERVER_OPTIMIZERS: dict[str, ServerOptimizerFactory] = {
    "sgd": lambda params, c, lr: torch.optim.SGD(params, lr=lr, momentum=c.server_momentum),
    "adam": lambda params, c, lr: torch.optim.Adam(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.tau),
    # AdamW's default weight decay (0.01) would shrink the global model every round: none on the server.
    "adamw": lambda params, c, lr: torch.optim.AdamW(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.tau,
                                                    weight_decay=0.0),
    "adagrad": lambda params, c, lr: torch.optim.Adagrad(params, lr=lr, eps=c.tau),
}


@register_algorithm("fedopt")
class FedOpt(Algorithm):
    """A named torch optimizer on the server (--server-optimizer sgd|adam|adamw|adagrad), grad = -mean update.

    Torch's own rules apply (Adam's bias correction, eps outside the square root): for the paper's
    FedAdam use `fedadam`. sgd with --server-lr 1 and no momentum is FedAvg; with momentum beta it is FedAvgM.
    """

    default_server_lr = None
    Options = FedOptOptions

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        if self.options.server_optimizer not in SERVER_OPTIMIZERS:
            raise UserError(f"--server-optimizer {self.options.server_optimizer!r} is not known; "
                            f"known: {', '.join(sorted(SERVER_OPTIMIZERS))}")
        self.make = SERVER_OPTIMIZERS[self.options.server_optimizer]
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None
        self._bound: torch.Tensor | None = None

    def server_step(self, global_flat: torch.Tensor, mean_update: torch.Tensor, ctx: Any) -> None:
        if self.optimizer is None:
            self._bound = global_flat  # the runtime's global weights, updated in place by step()
            self.optimizer = self.make([global_flat], self.options, self.server_lr)
            if self._pending is not None:
                self.optimizer.load_state_dict(self._pending)
                self._pending = None
        if global_flat is not self._bound:
            raise ValueError("fedopt's server optimizer is bound to one global weight tensor for the whole run")
        global_flat.grad = mean_update.neg_()
        self.optimizer.step()
        global_flat.grad = None

    def state_dict(self) -> dict[str, Any]:
        if self.optimizer is None:
            return {} if self._pending is None else {"optimizer": self._pending}
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" not in state:
            return
        if self.optimizer is None:
            self._pending = state["optimizer"]
        else:
            self.optimizer.load_state_dict(state["optimizer"])
