"""The operator's side of a session that is not the console: alerts to a person (``alerts``,
``alert_rules``) and the preflight check before a start (``preflight``, ``preflight_cli``)."""
