"""The operator's side of a session that is not the console: alerts to a person (``alerts``,
``alert_rules``), the preflight check before a start (``preflight``, ``preflight_cli``), and running hip3
as a service (``logrotate``, ``sd_notify``, ``service``, ``readiness``)."""
