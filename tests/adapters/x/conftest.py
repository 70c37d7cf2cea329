"""The X test world as a fixture for every test here (see x_world.py)."""

from tests.adapters.x.x_world import world

__all__ = ["world"]
