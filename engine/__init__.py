"""Equity Engine: allocate acquisition and retention budgets to maximize total customer equity."""

__version__ = "0.1.0"
