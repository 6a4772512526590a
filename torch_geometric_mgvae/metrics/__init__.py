"""Evaluation metrics: graph MMD, link prediction, molecules."""

__all__ = []
