"""autoresearch: an agent edits train.py, trains for a fixed budget, keeps what beats the noise."""

__version__ = "0.1.0"
