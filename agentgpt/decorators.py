"""The decorator names this deployment supports: the one registry shared by the session service (which
refuses an unknown name at CreateSession, AttachDecorators and ActivateSession) and the executor (which
resolves each name to its implementation and refuses the task if it cannot).

Built-in families (the implementations are in services/executor/decorators/):

    kyc_tier<N>          N in KYC_TIERS (1..5): the owner's KYC attestation must be of tier >= N
    ofac_filter          refuses plans touching an address on the sanctions list
    gas_optimizer_v<N>   N in GAS_OPTIMIZER_VERSIONS (1..3): EIP-1559 fees from eth_feeHistory
    zk_batch_prover      every checkpoint carries Groth16 proofs of its task records, checked on chain
                         (agentgpt/zk; shown as ZK_BATCH_PROVER)

Bundles (BUNDLES: one name standing for several built-ins, expanded at the executor by `expand`):

    compliance_tier<N>   N in KYC_TIERS: kyc_tier<N> then ofac_filter (shown as COMPLIANCE_TIER<N>)

A name is supported only if it is spelled exactly so: `kyc_tier9`, `kyc_tier04`, `ofac_filter2` and
`gas_optimizer3` are unknown, never a fallback to the family.

Plug-ins are declared through the `agentgpt.decorators` entry-point group; the entry point's name is
the decorator's name, exactly (a plug-in family registers one entry point per name), and its object is
the executor's factory(name, deps) -> Decorator:

    [project.entry-points."agentgpt.decorators"]
    my_check = "my_pkg.decorators:make_my_check"

An entry point named like a built-in family's base (`kyc_tier`, `ofac_filter`, `gas_optimizer`)
replaces that family's implementation; the names it accepts stay the family's. The session service reads
only the entry points' names (nothing is imported); the executor loads them.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

log = logging.getLogger("agentgpt.decorators")

ENTRY_POINT_GROUP = "agentgpt.decorators"
KYC_TIERS: tuple[int, ...] = (1, 2, 3, 4, 5)
GAS_OPTIMIZER_VERSIONS: tuple[int, ...] = (1, 2, 3)
_NAME = re.compile(r"[a-z0-9_]{1,64}")


class UnknownDecorator(LookupError):
    """A decorator name this deployment does not support (or, at an executor, cannot provide)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Family:
    """Decorator names sharing one implementation: `base` alone, or `base + marker + N` for N in params."""

    base: str
    marker: str = ""  # between the base and the number: "" (kyc_tier4) or "_v" (gas_optimizer_v3)
    params: tuple[int, ...] = ()  # () = a single name without a parameter

    def names(self) -> tuple[str, ...]:
        if not self.params:
            return (self.base,)
        return tuple(f"{self.base}{self.marker}{n}" for n in self.params)

    def describe(self) -> str:
        names = self.names()
        if len(names) > 2 and list(self.params) == list(range(self.params[0], self.params[-1] + 1)):
            return f"{names[0]}..{names[-1]}"
        return ", ".join(names)

    def match(self, name: str) -> tuple[bool, int | None]:
        """(whether `name` is spelled as one of this family's, its number if the family has one); the
        number may still be one the family does not support."""
        if not self.params:
            return name == self.base, None
        prefix = self.base + self.marker
        rest = name[len(prefix) :]
        if not name.startswith(prefix) or not rest.isascii() or not rest.isdigit() or rest != str(int(rest)):
            return False, None
        return True, int(rest)


BUILTIN_FAMILIES: tuple[Family, ...] = (
    Family("kyc_tier", "", KYC_TIERS),
    Family("ofac_filter"),
    Family("gas_optimizer", "_v", GAS_OPTIMIZER_VERSIONS),
    Family("compliance_tier", "", KYC_TIERS),  # a bundle: see BUNDLES
    Family("zk_batch_prover"),
)

# Bundles: a family base -> its parts, each a format string of the bundle's parameter, applied in order.
BUNDLES: dict[str, tuple[str, ...]] = {
    "compliance_tier": ("kyc_tier{n}", "ofac_filter"),
}


def expand(name: str) -> tuple[str, ...]:
    """The decorator names `name` stands for: a bundle's parts (e.g. compliance_tier2 -> kyc_tier2,
    ofac_filter), or (name,) for any other name. UnknownDecorator if the bundle name is not supported."""
    for family in BUILTIN_FAMILIES:
        if family.base in BUNDLES and family.match(name)[0]:
            resolved = DecoratorSet(BUILTIN_FAMILIES).resolve(name)
            return tuple(part.format(n=resolved.parameter) for part in BUNDLES[family.base])
    return (name,)


@dataclass(frozen=True)
class Resolved:
    """A supported name and what implements it."""

    name: str  # as written in the spec
    implementation: str  # key of its factory: a built-in family's base, or the plug-in's name
    parameter: int | None  # the tier / version, for a parameterised family


class DecoratorSet:
    """The supported names: built-in families plus plug-in names."""

    def __init__(self, families: Iterable[Family] = BUILTIN_FAMILIES, plugins: Iterable[str] = ()) -> None:
        self.families = tuple(families)
        bases = {f.base for f in self.families}
        # a plug-in named like a family's base only replaces the family's implementation
        self.plugins = tuple(sorted(p for p in set(plugins) if p not in bases))

    def with_plugins(self, *names: str) -> DecoratorSet:
        return DecoratorSet(self.families, (*self.plugins, *names))

    def names(self) -> tuple[str, ...]:
        """Every supported name, built-ins first."""
        return tuple(n for f in self.families for n in f.names()) + self.plugins

    def describe(self) -> str:
        """The supported names for an error message, e.g. 'kyc_tier1..kyc_tier5, ofac_filter, ...'."""
        return ", ".join([f.describe() for f in self.families] + list(self.plugins))

    def suggestion(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.7)
        return close[0] if close else None

    def resolve(self, name: str) -> Resolved:
        """What implements `name`; UnknownDecorator (saying what is supported) if nothing does."""
        if isinstance(name, str) and name in self.plugins:
            return Resolved(name, name, None)
        if isinstance(name, str):
            for family in self.families:
                matches, param = family.match(name)
                if not matches:
                    continue
                if param is None or param in family.params:
                    return Resolved(name, family.base, param)
                raise UnknownDecorator(
                    name,
                    f"unknown decorator {name!r}: {family.base} is supported as {family.describe()}",
                )
        hint = self.suggestion(name) if isinstance(name, str) else None
        raise UnknownDecorator(
            name,
            f"unknown decorator {str(name)[:80]!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; supported: {self.describe()}",
        )

    def known(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UnknownDecorator:
            return False
        return True


def plugin_entry_points() -> dict[str, EntryPoint]:
    """The `agentgpt.decorators` entry points by name (not loaded); badly named ones are skipped."""
    out: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if not _NAME.fullmatch(ep.name):
            log.warning("ignoring decorator entry point %r: a name must match [a-z0-9_]{1,64}", ep.name)
            continue
        out[ep.name] = ep
    return out


@lru_cache(maxsize=1)
def supported_decorators() -> DecoratorSet:
    """This deployment's decorators: the built-ins plus the installed plug-ins (read once)."""
    return DecoratorSet(plugins=plugin_entry_points())
