"""Gateway adapters behind one interface (``adapters.base``); ``adapters.registry`` lists them.

Nothing here imports from ``service/``: the adapters are the layer below it.
"""
