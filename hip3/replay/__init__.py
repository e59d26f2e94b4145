"""Record and replay: the feed records raw exchange frames (``recording``; rotated, compressed parts and
their index: ``rotation``); ``python supervisor.py replay FILE`` drives the real actor graph from such a
file against the simulator's matching engine, in one thread, lock-stepped on a virtual clock (``driver``,
``hip3.sim.replay``)."""
