"""The container files stay in step with the project (no Docker engine here: nothing is built).

docker-compose.yml runs sparkmart commands, and the Dockerfile installs what `make setup`
installs; these tests fail when a command, an option or a system package drifts apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
import yaml

from sparkmart.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
SPARKMART_SERVICES = {
    name: service
    for name, service in COMPOSE["services"].items()
    if service.get("image", "").startswith("sparkmart")
}


def expand(arg: str) -> str:
    """Compose's ${VAR:-default} with the default, as `docker compose up` would without VAR."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg)


def parse(args: list[str]) -> typer.Context:
    """Parse a sparkmart command line the way the CLI would, without running it."""
    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="sparkmart")
    command = group.get_command(root, args[0])  # type: ignore[attr-defined]
    if command is None:
        raise ValueError(f"no sparkmart command {args[0]!r}")
    return command.make_context(args[0], list(args[1:]), parent=root)


def test_compose_runs_the_demo_and_the_dashboard_on_postgres() -> None:
    assert set(SPARKMART_SERVICES) == {"app", "dashboard"}
    assert SPARKMART_SERVICES["app"]["command"][0] == "demo"
    assert SPARKMART_SERVICES["dashboard"]["command"][0] == "dashboard"
    assert "127.0.0.1:8050:8050" in SPARKMART_SERVICES["dashboard"]["ports"]
    for service in SPARKMART_SERVICES.values():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert any(volume.endswith(":/app/data") for volume in service["volumes"])
    assert "pg_isready" in " ".join(COMPOSE["services"]["postgres"]["healthcheck"]["test"])


@pytest.mark.parametrize("service", sorted(SPARKMART_SERVICES))
def test_compose_commands_parse_as_sparkmart_commands(service: str) -> None:
    args = [expand(arg) for arg in SPARKMART_SERVICES[service]["command"]]
    context = parse(args)
    assert context.command.name == args[0]
    if service == "dashboard":
        assert context.params["host"] == "0.0.0.0"  # reachable through the published port


def test_a_wrong_option_would_be_caught() -> None:
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        parse(["demo", "--no-such-option"])
    with pytest.raises(Exception, match="no sparkmart command"):
        parse(["no-such-command"])


def test_dockerfile_installs_what_setup_installs() -> None:
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    for package in ("openjdk-17-jre-headless", "libpostgresql-jdbc-java"):
        assert package in setup and package in DOCKERFILE
    assert re.search(r"^USER sparkmart$", DOCKERFILE, re.M)  # not root
    entrypoint = re.search(r"^ENTRYPOINT (.*)$", DOCKERFILE, re.M)
    assert entrypoint is not None and json.loads(entrypoint.group(1)) == ["sparkmart"]
    python = re.search(r"^FROM python:(\d+\.\d+)", DOCKERFILE, re.M)
    assert python is not None
    required = re.search(
        r'requires-python = ">=(\d+\.\d+)"', (REPO_ROOT / "pyproject.toml").read_text()
    )
    assert required is not None
    major_minor = tuple(int(part) for part in python.group(1).split("."))
    assert major_minor >= tuple(int(part) for part in required.group(1).split("."))
