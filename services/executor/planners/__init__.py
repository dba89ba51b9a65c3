"""Model adapters: whatever turns a task into a Plan. Swappable per session (context epochs)."""

from __future__ import annotations

from services.executor.planners.base import Planner, SessionView
from services.executor.planners.builtin import BuiltinPlanner
from services.executor.planners.openai import OpenAIPlanner

__all__ = ["BuiltinPlanner", "OpenAIPlanner", "Planner", "SessionView"]
