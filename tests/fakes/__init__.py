"""Fakes for the language models our agents talk to: they speak the real protocols."""
