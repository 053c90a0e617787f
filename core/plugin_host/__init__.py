"""The plugin host: finding, registering, resolving and describing plugins.

``manager`` builds the registry (built-ins and entry points of group ``kdforge``),
``records`` holds what is registered, ``resolve`` turns config references into plugin
instances, ``info`` describes one plugin, ``scaffold`` writes a new plugin package.
"""

from __future__ import annotations

__all__: list[str] = []
