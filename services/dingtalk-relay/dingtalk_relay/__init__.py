"""Alertmanager webhook -> DingTalk custom robot relay that never silently drops an alert."""

__version__ = "0.1.0"
