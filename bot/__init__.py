"""Polymarket take-profit / stop-loss bot."""
