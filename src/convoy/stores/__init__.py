"""Stores: everything Convoy persists, behind one protocol."""
