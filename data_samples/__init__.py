"""The bundled sample data, installed as the package ``emozone_lite.data``.

Not code: this file only makes ``data_samples/`` an importable package so that a
plain ``pip install`` ships the data inside ``emozone_lite`` (see ``pyproject.toml``).
Find files with ``emozone_lite.data_path(name)``; ``README.md`` here lists every
file with its source, licence, size and sha256.
"""
