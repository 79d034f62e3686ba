"""The ``meterline`` command: one front door to every package's commands (``meterline.cli``)."""
