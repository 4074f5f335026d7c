"""The expected purchase stream of a customer alive now, as CLV needs it from any purchase model.

``expected(t, x, T)`` is E[purchases in (T, T+t] | alive at T, x repeats by T] and
``rate(s, x, T)`` its derivative s time units ahead (for the infinite-horizon tail,
``engine.clv.value``). BG/NBD's (``engine.clv.bgnbd``) serves MBG/NBD too, with b + 1 (its
posterior dropout is Beta(a, b+x+1)); Pareto/NBD's is in ``engine.clv.pareto_nbd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.clv.bgnbd import BGNBDParams, expected_purchases_alive, purchase_rate_alive

Array = NDArray[np.float64]


class AliveStream(Protocol):
    """A purchase model's expected purchases of a customer alive now: ``expected(t, x, T)``
    over the next t time units and its derivative ``rate(s, x, T)``, s time units ahead."""

    def expected(self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array: ...

    def rate(self, s: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array: ...


@dataclass(frozen=True)
class BGNBDStream:
    """BG/NBD's stream; MBG/NBD's is BG/NBD's with b + 1."""

    params: BGNBDParams

    def expected(self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array:
        return expected_purchases_alive(self.params, t, frequency, T)

    def rate(self, s: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array:
        return purchase_rate_alive(self.params, s, frequency, T)
