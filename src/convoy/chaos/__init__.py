"""Chaos engineering for Convoy workflows.

* :class:`FaultInjector` - an interceptor (put it last) that injects model timeouts (hangs),
  429s, 5xx, malformed or schema-invalid output, slow calls and tool failures, seeded
  deterministically per session, step and attempt.
* :func:`run_experiment` - a steady-state hypothesis checked before, during (faults, and
  optionally a SIGKILL of the engine process followed by a resume) and after, reported as
  a Chaos Toolkit-shaped journal. ``convoy chaos`` is its command line.
"""

from convoy._faults import FAULT_KINDS, MODEL_FAULTS
from convoy.chaos._experiment import run_experiment
from convoy.chaos._faults import FaultInjector, FaultSpec
from convoy.chaos._hypothesis import Hypothesis
from convoy.chaos._phase import PhaseConfig, PhaseMetrics, chaos_interceptors, measure, run_phase
from convoy.chaos._process import ChaosAborted

__all__ = ["FAULT_KINDS", "MODEL_FAULTS", "ChaosAborted", "FaultInjector", "FaultSpec",
           "Hypothesis", "PhaseConfig", "PhaseMetrics", "chaos_interceptors", "measure",
           "run_experiment", "run_phase"]
