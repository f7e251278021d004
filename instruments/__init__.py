"""Instrument description files shipped with xhsi (package data; no code)."""
