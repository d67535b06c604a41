"""HTTP routers of the leader, one per resource; they speak protocol models, never SQL rows."""

from fastapi import Request

from leader.membership import Membership
from leader.store import Store
from shared.config import LeaderSettings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_membership(request: Request) -> Membership:
    return request.app.state.membership


def get_settings(request: Request) -> LeaderSettings:
    return request.app.state.settings
