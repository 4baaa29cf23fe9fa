"""The Argo CD health check for LumenAlertPolicy, run by a real Lua interpreter.

``argocd/resource_customizations/lumen.dev/LumenAlertPolicy/`` has the layout of Argo CD's
built-in checks: ``health.lua``, ``testdata/*.yaml`` and ``health_test.yaml`` listing the status
and message each sample must give. Argo CD runs the script in gopher-lua (Lua 5.1) with the
object as the global ``obj`` and reads back the table it returns; this test does the same in
Lua 5.1 or LuaJIT through lupa, with only the libraries Argo CD opens (base, table, package, a
safe ``os``: no ``string``, ``math`` or ``io``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "argocd" / "resource_customizations" / "lumen.dev" / "LumenAlertPolicy"
# argocd-cm's key for a health check: resource.customizations.health.<group>_<kind>.
CM_KEY = "resource.customizations.health.lumen.dev_LumenAlertPolicy"
# Argo CD's health status codes; any other code shows as Unknown.
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
# Globals Argo CD's VM does not have (it opens base, table, package and a safe os only).
NOT_IN_ARGO = ("string", "math", "io", "debug", "coroutine", "dofile", "loadfile")


def lua51() -> ModuleType:
    """lupa's Lua 5.1 dialect: LuaJIT 2.1, LuaJIT 2.0 or Lua 5.1, whichever the wheel has."""
    for name in ("lupa.luajit21", "lupa.luajit20", "lupa.lua51"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.fail("lupa has no Lua 5.1 runtime (luajit21, luajit20 or lua51)")


def to_lua(lua: Any, value: Any) -> Any:
    """``value`` (parsed YAML) as Argo CD hands it to Lua: maps and lists become tables (lists
    indexed from 1), null becomes nil (an absent key)."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(lua, item)
        return table
    if isinstance(value, list):
        return lua.table(*(to_lua(lua, item) for item in value))
    if isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"not a JSON value: {value!r} (quote timestamps in the test data)")


def run_health(obj: dict[str, Any], script: str) -> dict[str, Any]:
    runtime = lua51()
    lua = runtime.LuaRuntime(register_eval=False, register_builtins=False)
    env = lua.globals()
    assert "LuaJIT" in str(env._VERSION) or env._VERSION == "Lua 5.1"
    for name in NOT_IN_ARGO:
        env[name] = None
    env.obj = to_lua(lua, obj)
    result = lua.execute(script)
    assert runtime.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def cases() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]
    return tests


@pytest.mark.parametrize("case", cases(), ids=lambda case: Path(case["inputPath"]).stem)
def test_health_of_each_sample(case):
    obj = yaml.safe_load((CHECK / case["inputPath"]).read_text())
    assert obj["apiVersion"] == "lumen.dev/v1alpha1"
    assert obj["kind"] == "LumenAlertPolicy"
    health = run_health(obj, (CHECK / "health.lua").read_text())
    assert health["status"] in ARGO_STATUSES
    expected = case["healthStatus"]
    assert health == {"status": expected["status"], "message": expected.get("message", "")}


def test_the_samples_cover_every_status_the_check_gives():
    listed = [case["inputPath"] for case in cases()]
    on_disk = sorted(f"testdata/{path.name}" for path in (CHECK / "testdata").glob("*.yaml"))
    assert sorted(listed) == on_disk, "every sample is in health_test.yaml, and only those"
    assert len(listed) >= 6
    statuses = {case["healthStatus"]["status"] for case in cases()}
    assert statuses == {"Healthy", "Progressing", "Degraded"}
    # Argo CD's convention: a sample's file name starts with the status it gives.
    for case in cases():
        prefix = Path(case["inputPath"]).name.split("_", 1)[0]
        assert prefix == case["healthStatus"]["status"].lower(), case["inputPath"]


def test_the_argocd_cm_patch_carries_this_script():
    patch = yaml.safe_load((ROOT / "argocd" / "argocd-cm-health.yaml").read_text())
    assert patch == {"data": {CM_KEY: (CHECK / "health.lua").read_text()}}
    assert CM_KEY in (ROOT / "docs" / "argocd.md").read_text()
