"""Record and replay (issue 9, item 4): the feed records raw exchange frames (``recording``); ``python
supervisor.py replay FILE`` drives the real actor graph from such a file against the simulator's matching
engine, in one thread, lock-stepped on a virtual clock (``driver``, ``hip3.sim.replay``)."""
