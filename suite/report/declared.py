"""What the reports know of a method: only what it declares on its class (`Method`'s report
attributes), looked up by the name its records carry. A name no longer registered gets the
defaults, so old records still render."""

from __future__ import annotations

from kanbench.suite.interfaces import Claim, Method
from kanbench.suite.registry import METHODS

PALETTE = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def declared(method: str, attribute: str):
    """The method's own declaration of `attribute` (never a parent class's), else the default."""
    cls = METHODS.get(method.split("[", 1)[0])
    return vars(cls).get(attribute, getattr(Method, attribute)) if cls else \
        getattr(Method, attribute)


def baseline() -> str:
    """The name of the registered baseline method (the dense KAN)."""
    (name,) = [n for n in METHODS.names() if declared(n, "baseline")]
    return name


def before_compression(method: str) -> str:
    """The stage whose metrics are the method's "before compression"."""
    return declared(method, "before_compression")


def colour(method: str) -> str:
    """The method's colour (a label `name[args]` takes its method's); undeclared ones get a
    stable one from the palette."""
    base = method.split("[", 1)[0]
    return declared(method, "colour") or PALETTE[sum(map(ord, base)) % len(PALETTE)]


def in_paper_table(method: str, table: str) -> bool:
    return table in declared(method, "paper_tables")


def claims() -> list[tuple[str, Claim]]:
    """(method, claim) of every registered method, papers in arXiv order, each method's
    claims in the order it declares them."""
    found = [(name, claim) for name in METHODS.names() for claim in declared(name, "claims")]
    return sorted(found, key=lambda pair: pair[1].arxiv)
