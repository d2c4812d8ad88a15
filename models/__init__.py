"""The shipped models, installed as package data so `fer-edge` finds them after `pip install .`."""
