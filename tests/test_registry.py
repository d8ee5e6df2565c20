"""The gateway registry: one table that everything iterates, and the layering it stands on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters import registry
from adapters.config import Env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("gateway", registry.GATEWAYS, ids=lambda g: g.name)
def test_each_entry_names_its_adapter_emulator_and_config_by_one_name(gateway: registry.Gateway) -> None:
    adapter = gateway.adapter()
    assert (adapter.gateway_type, adapter.webhook_name) == (gateway.name, gateway.webhook)
    assert gateway.emulator().gateway_type == gateway.name
    assert gateway.config.from_env(Env({})) is None  # unconfigured: off, not an error
    assert Path(ROOT, *gateway.config.__module__.split(".")).with_suffix(".py").parent == \
        Path(ROOT, *adapter.__module__.split(".")).parent  # the adapter's package owns its config


def test_names_and_webhooks_are_unique() -> None:
    assert len({g.name for g in registry.GATEWAYS}) == len({g.webhook for g in registry.GATEWAYS}) == 3
    assert registry.GATEWAY_TYPES == ("stripe-connect", "alipay-page", "wechat-pay-native")


def test_the_registry_loads_no_sdk_and_adapters_import_nothing_from_service() -> None:
    """Reading settings loads only the config classes; each adapter, imported alone, pulls in
    nothing from service/ (the layer above)."""
    script = (
        "import sys, importlib\n"
        "import adapters.registry\n"
        "assert not {'stripe', 'alipay', 'wechatpayv3'} & set(sys.modules), sorted(sys.modules)\n"
        "for module in sys.argv[1:]:\n"
        "    importlib.import_module(module)\n"
        "leaks = sorted(name for name in sys.modules if name == 'service' or name.startswith('service.'))\n"
        "assert not leaks, leaks\n"
    )
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "adapters").rglob("*.py")
        if path.name != "__init__.py"
    )
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
