"""Gateway adapters behind one interface (``adapters.base``); ``adapters.registry`` lists them and
builds them, all on one HTTP transport (``adapters.transport``).

Nothing here imports from ``service/``: the adapters are the layer below it.
"""
