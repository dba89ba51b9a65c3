"""Model adapters: whatever turns a task into a Plan. Swappable per session (context epochs)."""

from __future__ import annotations

from services.executor.models.base import Planner, SessionView
from services.executor.models.builtin import BuiltinPlanner
from services.executor.models.openai import OpenAIPlanner

__all__ = ["BuiltinPlanner", "OpenAIPlanner", "Planner", "SessionView"]
