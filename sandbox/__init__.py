"""Local emulators of the gateways' HTTP APIs, for the tests and `payrelay demo`.

Each emulator is a Starlette app built by a factory in its own module, keeping its state in
memory and exposing counters the tests read. ``sandbox.runner`` serves any ASGI app on a real
loopback port, so the official SDKs talk to the emulators over real HTTP.
"""
