"""The algorithm interface's first home, kept so that plugins written against `fednlp.algorithms.base` still
import: the contract lives in fednlp/algorithms/interface.py."""

from fednlp.algorithms.interface import Algorithm, ClientUpdate, RoundContext, algorithm_option, parse_options

__all__ = ["Algorithm", "ClientUpdate", "RoundContext", "algorithm_option", "parse_options"]
