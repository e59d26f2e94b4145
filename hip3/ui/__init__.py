"""The operator's seat: the console, the live view (``status --watch``), the web dashboard, stopping.

Everything here runs in the supervisor process or in the CLI, from what the supervisor already receives
(the ``exec`` and ``positions`` streams, heartbeats, the detector's once-a-second market summary, its
own log records). No hot-path actor renders, formats or waits for any of it.
"""
