"""Named deployments of a model, and routing among them (LiteLLM's model groups).

A :class:`Deployment` is one endpoint serving a model: its base URL, where its API key is
read from, its rate limits and its price. :class:`Deployments` puts every model that has
deployments into the engine's model registry under the model's name, and, as an interceptor
inside the retry and outside the breakers, sends each attempt of a call to one of them:

    retry → **deployments** → breaker (per deployment) → budget (its price) → rate limit
    (its buckets) → timeout → adapter

so each deployment has its own breakers, rate limits, cooldown, price and metrics, keyed by
its id (``"openai:gpt-4o-mini@east"``, :attr:`convoy.Model.deployment`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from convoy._errors import UserError
from convoy.cost._pricing import Price
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models import infer_model
from convoy.models._base import Model
from convoy.models._messages import ModelRequest, ModelResponse
from convoy.resilience._bulkhead import Rate, RateLimit
from convoy.resilience._classify import (
    ErrorMatches,
    check_matches,
    classify,
    failure_kind,
    is_downstream_failure,
    matches,
)

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

Strategy = Literal["in_order", "least_busy", "lowest_latency"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)


@dataclass(frozen=True, kw_only=True, slots=True)
class Deployment:
    """One endpoint serving a model.

    Several deployments of one model (``"openai:gpt-4o-mini"`` behind two base URLs, or
    with two keys) each have their own circuit breakers, rate limits, cooldown, price and
    metrics, keyed by :attr:`id`; :class:`Deployments` routes the model's calls among them.

    Args:
        name: the deployment's name, unique among the deployments of ``model`` (``"east"``).
        model: the model name agents ask for, ``"provider:model"`` (no ``?options``).
        base_url: the endpoint, for ``openai:`` models (default: ``OPENAI_BASE_URL``).
        api_key_env: the *name* of the environment variable that holds the API key, read
            when the deployment is first called; never the key itself, so configuration,
            logs and breaker keys never carry a secret. Default: the adapter's own
            (``OPENAI_API_KEY``; none needed on loopback).
        rpm: requests per minute this deployment allows (a smoothed bucket, as
            :class:`Rate`); a deployment out of tokens is passed over while another has some.
        tpm: tokens per minute this deployment allows.
        price: USD per million tokens on this deployment (default: the model's price).
        adapter: a model instance to call instead of building one from ``model`` (the
            simulator, or an adapter of your own).
    """

    name: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    price: Price | None = None
    adapter: Model | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or "@" in self.name:
            raise UserError(f"Deployment.name must be a non-empty name without spaces or '@', "
                            f"got {self.name!r}")
        provider, sep, _ = self.model.partition(":")
        if not sep or "?" in self.model:
            raise UserError(f"Deployment {self.name!r}: model must look like 'provider:model' "
                            f"without options, got {self.model!r}")
        if self.adapter is not None and (self.base_url or self.api_key_env):
            raise UserError(f"Deployment {self.name!r}: give either adapter= or "
                            "base_url=/api_key_env=, not both")
        if self.adapter is None and provider != "openai" and (self.base_url or
                                                              self.api_key_env):
            raise UserError(f"Deployment {self.name!r}: base_url and api_key_env are for "
                            f"'openai:' models, not {self.model!r}; pass adapter= instead")
        for field in ("rpm", "tpm"):
            v = getattr(self, field)
            if v is not None and v <= 0:
                raise UserError(f"Deployment {self.name!r}: {field} must be > 0 or None")

    @property
    def id(self) -> str:
        """``"MODEL@NAME"``: what its breakers, rate limits, cooldown, price and metrics are
        keyed by."""
        return f"{self.model}@{self.name}"

    def build(self) -> Model:
        """The adapter that calls this deployment (its API key read from ``api_key_env``)."""
        if self.adapter is not None:
            return self.adapter
        provider, _, bare = self.model.partition(":")
        if provider != "openai":
            return infer_model(self.model)
        api_key = None
        if self.api_key_env is not None:
            api_key = os.environ.get(self.api_key_env)
            if not api_key:
                raise UserError(f"deployment {self.id!r} reads its API key from the "
                                f"environment variable {self.api_key_env!r}, which is not set")
        from convoy.models._openai import OpenAIModel

        return OpenAIModel(model=bare, base_url=self.base_url, api_key=api_key)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeploymentStats:
    """What :meth:`Deployments.stats` reports for one deployment."""

    deployment: str
    calls: int
    """Calls routed to it (each attempt of each call)."""
    failures: int
    """Calls that failed in a way a breaker counts (5xx, timeouts, ...)."""
    rate_limited: int
    """Calls it answered with a rate limit (each started a cooldown)."""
    rejected: int
    """Calls its open breaker refused (the next deployment was tried)."""
    in_flight: int
    latency: float | None
    """Moving average (EWMA) of its successful calls' duration, in seconds."""
    cooldown: float
    """Seconds left before it is preferred again after a rate limit."""


class _Endpoint(Model):
    """One deployment as a model: what the chain inside :class:`Deployments` sees."""

    def __init__(self, spec: Deployment, limit: RateLimit | None) -> None:
        self.spec = spec
        self.name = spec.model
        self.deployment = spec.id
        self.max_output_tokens = spec.adapter.max_output_tokens if spec.adapter else None
        self.limit = limit
        self._built: Model | None = None
        self.calls = self.failures = self.rate_limited = self.rejected = self.in_flight = 0
        self.latency: float | None = None
        self.cooldown_until = 0.0

    def adapter(self) -> Model:
        if self._built is None:
            self._built = self.spec.build()
        return self._built

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await self.adapter().request(request)

    async def aclose(self) -> None:
        built, self._built = self._built, None
        if built is not None and built is not self.spec.adapter:
            await built.aclose()


class _Group(Model):
    """A model name with deployments, in the engine's registry: calls to it are routed by
    the :class:`Deployments` that registered it."""

    def __init__(self, name: str, endpoints: list[_Endpoint], strategy: Strategy,
                 router: Deployments) -> None:
        self.name = name
        self.endpoints = endpoints
        self.strategy: Strategy = strategy
        self.router = router

    async def request(self, request: ModelRequest) -> ModelResponse:
        # Reached only when an interceptor inside the router swaps this model in (a budget
        # downgrade): routed, but without the per-deployment protections.
        return await self.router.order(self)[0].request(request)

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.aclose()


class Deployments(Interceptor):
    """Routes each call of a model among its deployments.

    Every model with deployments is registered in the engine's model registry under its
    name when the engine opens (an agent asks for ``"openai:gpt-4o-mini"`` as before), and
    each attempt of a call to it goes to one deployment, chosen by the model's strategy:

    * ``"in_order"`` (failover): the first deployment, then the next;
    * ``"least_busy"``: the one with the fewest calls in flight;
    * ``"lowest_latency"``: the one with the lowest moving average of its successful calls'
      duration (one not measured yet first, so each gets measured).

    Ties go to the earlier deployment. A deployment on cooldown (it answered a rate limit:
    for its ``Retry-After``, else ``cooldown`` seconds, at most ``max_cooldown``) or out of
    its ``rpm`` tokens is passed over while another is available; when none is, the call
    goes to the one available soonest. A deployment whose breaker is open refuses at once
    and the next is tried. Within one attempt a call moves on to the next deployment
    after a failure another deployment may not have (a rate limit, an open circuit, or a
    retryable failure; ``failover_on`` to say otherwise), each deployment at most once;
    a terminal failure (a bad request, a context window exceeded) ends the attempt at
    once. Failing over is not a retry: it reaches another endpoint, and the retry budget
    does not count it.

    Args:
        deployments: the deployments, in order (the order ``"in_order"`` follows).
        strategy: one strategy for every model, or a strategy per model name (models not
            named use ``"in_order"``).
        cooldown: seconds a deployment is passed over after a rate limit without
            ``Retry-After``.
        max_cooldown: the longest cooldown, whatever ``Retry-After`` says.
        latency_weight: weight of the newest duration in the moving average, in (0, 1].
        failover_on: which failures move a call on to the next deployment (default: rate
            limits, open circuits and retryable failures).
        clock: monotonic seconds (cooldowns, durations); ``sleep``: for the ``rpm``/``tpm``
            waits. Both injectable for tests.
    """

    stage: Stage = "deployment"

    def __init__(self, deployments: Sequence[Deployment], *,
                 strategy: Strategy | Mapping[str, Strategy] = "in_order",
                 cooldown: float = 5.0, max_cooldown: float = 60.0,
                 latency_weight: float = 0.3, failover_on: ErrorMatches | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if not deployments:
            raise UserError("Deployments needs at least one Deployment")
        if cooldown < 0 or max_cooldown < 0 or not 0 < latency_weight <= 1:
            raise UserError("Deployments: cooldown and max_cooldown must be >= 0 and "
                            "latency_weight in (0, 1]")
        check_matches(failover_on, "Deployments(failover_on=...)")
        seen: set[str] = set()
        by_model: dict[str, list[_Endpoint]] = {}
        for d in deployments:
            if d.id in seen:
                raise UserError(f"deployment {d.id!r} is given twice: name the deployments "
                                "of one model apart")
            seen.add(d.id)
            limit = RateLimit(Rate(rpm=d.rpm, tpm=d.tpm), clock=clock, sleep=sleep) \
                if d.rpm or d.tpm else None
            by_model.setdefault(d.model, []).append(_Endpoint(d, limit))
        per_model = strategy if isinstance(strategy, Mapping) else {}
        for name, s in ({"*": strategy} if isinstance(strategy, str) else per_model).items():
            if s not in STRATEGIES:
                raise UserError(f"unknown routing strategy {s!r} for {name!r}; known: "
                                f"{', '.join(STRATEGIES)}")
        unknown = set(per_model) - set(by_model)
        if unknown:
            raise UserError(f"strategy given for {sorted(unknown)}, which have no deployments;"
                            f" models with deployments: {sorted(by_model)}")
        default: Strategy = strategy if isinstance(strategy, str) else "in_order"
        self.groups: dict[str, _Group] = {
            m: _Group(m, eps, per_model.get(m, default), self) for m, eps in by_model.items()}
        self.cooldown, self.max_cooldown = cooldown, max_cooldown
        self.latency_weight = latency_weight
        self.failover_on = failover_on
        self._clock = clock
        self.failovers = 0

    async def start(self, engine: Engine) -> None:
        """Register every model with deployments in the engine's model registry, and the
        deployments' prices in its price table."""
        rt = engine.runtime
        for name, group in self.groups.items():
            known = rt.models.get(name)
            if known is not None and known is not group:
                raise UserError(f"model {name!r} is both in Engine(models=...) and has "
                                "deployments; register it in one place")
            rt.models[name] = group
            for e in group.endpoints:
                price = e.spec.price
                if price is not None and rt.prices is not None:
                    rt.prices.set(e.deployment, input_per_mtok=price.input_per_mtok,
                                  output_per_mtok=price.output_per_mtok)

    def order(self, group: _Group) -> list[_Endpoint]:
        """The deployments of ``group`` in the order a call tries them now."""
        eps = group.endpoints
        if len(eps) == 1:
            return list(eps)
        now = self._clock()
        strategy = group.strategy

        def key(item: tuple[int, _Endpoint]) -> tuple[bool, float, float, int]:
            i, e = item
            wait = max(0.0, e.cooldown_until - now)
            if e.limit is not None:
                wait = max(wait, e.limit.wait_for(e))
            if strategy == "least_busy":
                load = float(e.in_flight)
            elif strategy == "lowest_latency":
                load = e.latency or 0.0
            else:
                load = 0.0
            return (wait > 0, wait, load, i)

        return [e for _, e in sorted(enumerate(eps), key=key)]

    def stats(self) -> dict[str, DeploymentStats]:
        """Routing state of every deployment, by id."""
        now = self._clock()
        return {e.deployment: DeploymentStats(
            deployment=e.deployment, calls=e.calls, failures=e.failures,
            rate_limited=e.rate_limited, rejected=e.rejected, in_flight=e.in_flight,
            latency=e.latency, cooldown=max(0.0, e.cooldown_until - now))
            for g in self.groups.values() for e in g.endpoints}

    def _fails_over(self, error: Exception) -> bool:
        if self.failover_on is not None:
            return matches(self.failover_on, error)
        return failure_kind(error) in ("rate_limited", "circuit_open") or \
            classify(error) == "retryable"

    def _note_failure(self, e: _Endpoint, error: Exception) -> None:
        kind = failure_kind(error)
        if kind == "rate_limited":
            e.rate_limited += 1
            after = getattr(error, "retry_after", None)
            wait = self.cooldown if after is None else after
            e.cooldown_until = self._clock() + min(max(0.0, wait), self.max_cooldown)
        elif kind == "circuit_open":
            e.rejected += 1
        elif is_downstream_failure(error):
            e.failures += 1

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        group = input.model
        if not isinstance(group, _Group) or group.router is not self:
            return await next(input)
        errors: list[Exception] = []
        clock = self._clock
        try:
            for e in self.order(group):
                if errors:
                    self.failovers += 1
                input.model = e
                e.calls += 1
                e.in_flight += 1
                t0 = clock()
                try:
                    resp = await (e.limit.model_call(input, next) if e.limit is not None
                                  else next(input))
                except Exception as error:
                    self._note_failure(e, error)
                    if not self._fails_over(error):
                        raise
                    errors.append(error)
                    continue
                finally:
                    e.in_flight -= 1
                took = clock() - t0
                w = self.latency_weight
                e.latency = took if e.latency is None else w * took + (1 - w) * e.latency
                return resp
        finally:
            input.model = group
        # Every deployment failed: report a failure of a deployment that was called, rather
        # than the open circuit of one that was not.
        raise _reported(errors)


def _reported(errors: list[Exception]) -> Exception:
    """The error a call that failed on every deployment raises: the first that is not an
    open circuit, else the last."""
    for error in errors:
        if failure_kind(error) != "circuit_open":
            return error
    return errors[-1]
