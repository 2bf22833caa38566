"""The composition root: the root settings (``config``), the CLI (``cli``, ``commands/``), the
builders that turn settings into components (``components/``), their assembly into a daemon
(``wiring``, ``daemon``) and the HTTP app (``http``, ``auth``, ``openapi``).

It alone may import every feature, including their internal modules; nothing imports it.
"""

__all__: list[str] = []
