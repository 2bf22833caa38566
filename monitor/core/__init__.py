"""The kernel: what every part of finsent stands on, importing no feature.

Records on the bus (``records``), the bus and its settings (``bus``), durable files and disk
faults (``persist``), secrets and their masking (``secrets``), HMAC signatures (``signing``),
durations (``durations``), the settings-section base (``section``), logging (``logs``), health
checks (``health``), the API's error replies (``api_errors``), dead letters (``dlq``), strict
CSV and YAML readers (``csvfile``, ``yamlfile``), process tuning (``runtime``) and the systemd
notifier (``sdnotify``). Every module here is public to every layer above.
"""

__all__ = [
    "api_errors",
    "bus",
    "csvfile",
    "dlq",
    "durations",
    "health",
    "logs",
    "persist",
    "records",
    "runtime",
    "sdnotify",
    "secrets",
    "section",
    "signing",
    "yamlfile",
]
