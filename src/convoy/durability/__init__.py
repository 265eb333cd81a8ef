"""Durable execution: journaled steps, journal codecs, replay, durable waits."""

from convoy.durability._signals import LeaseLost, Parked, SessionInterrupted

__all__ = ["LeaseLost", "Parked", "SessionInterrupted"]
