"""Cost control as interceptors: budgets, a per-tenant response cache, token velocity."""

from convoy.cost._budget import Budget, BudgetLedger, Budgets
from convoy.cost._cache import ResponseCache, cache_key
from convoy.cost._velocity import TokenVelocity, VelocityAlert

__all__ = ["Budget", "BudgetLedger", "Budgets", "ResponseCache", "TokenVelocity",
           "VelocityAlert", "cache_key"]
