"""The operator console at /console: sign-in (``auth``), pages and actions (``routes``), the
dashboard's charts (``charts``), templates and static files (``web``)."""

from service.console.routes import Console

__all__ = ["Console"]
