"""The session's record for the operator: the SQLite trade journal the recorder writes (``db``), the
session report read from it (``report``), and the trades of the ``exec`` stream that a replay prints and
compares with a live run (``trades``)."""
