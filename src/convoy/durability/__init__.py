"""Durable execution: journaled steps, journal records and codecs, replay, waits."""
