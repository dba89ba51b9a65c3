"""The recovery protocol's tests run against a real session service: its fixtures, shared."""

from tests.component.session.conftest import make_service, owner, service

__all__ = ["make_service", "owner", "service"]
