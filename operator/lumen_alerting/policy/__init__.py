"""The LumenAlertPolicy resource: typed spec, loading, validation and its CRD schema."""

from .document import policy_from_manifest
from .loading import InvalidPolicy, Problem
from .model import Policy, PolicySpec

__all__ = ["InvalidPolicy", "Policy", "PolicySpec", "Problem", "policy_from_manifest"]
