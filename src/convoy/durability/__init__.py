"""Durable execution: the step executor, journaled steps, replay, durable waits."""

from convoy.durability._executor import (
    JournaledExecutor,
    NonDeterminismWarning,
    OnNonDeterminism,
    StepExecutor,
)
from convoy.durability._signals import LeaseLost, Parked, SessionInterrupted

__all__ = ["JournaledExecutor", "LeaseLost", "NonDeterminismWarning", "OnNonDeterminism",
           "Parked", "SessionInterrupted", "StepExecutor"]
