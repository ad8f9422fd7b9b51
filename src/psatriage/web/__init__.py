"""The web edge: the app factory, webhooks and the JSON API."""

from psatriage.web.app import create_app

__all__ = ["create_app"]
