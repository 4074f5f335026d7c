"""equity-nps: an Equity Engine plugin for NPS-driven retention.

- cost strategy ``nps-response``: each customer's baseline retention, ceiling and response
  to spend are shifted by its NPS category (from the ``nps_score`` column), then valued with
  the engine's exponential response curves;
- metric ``nps``: each customer's category and its segment's NPS; ``nps_by_segment`` and
  the ``equity-nps`` command report the portfolio's NPS per segment.
"""

from __future__ import annotations

from importlib import metadata

from equity_nps.nps import nps_by_segment, portfolio_nps

try:
    __version__ = metadata.version("equity-nps")
except metadata.PackageNotFoundError:  # running from a source checkout
    __version__ = "0.0.0"

__all__ = ["__version__", "nps_by_segment", "portfolio_nps"]
