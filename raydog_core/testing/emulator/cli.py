"""`raydog emulator`: run the YellowDog platform emulator in the foreground for offline work."""

from __future__ import annotations

import threading

import click

from raydog_core.testing.emulator import (
    DEFAULT_KEY_ID,
    DEFAULT_KEY_SECRET,
    DEFAULT_TEMPLATES,
    Emulator,
    Faults,
)


@click.command("emulator")
@click.option("--port", default=0, show_default=True, help="TCP port on 127.0.0.1 (0: any free port)")
@click.option(
    "--key-id", default=DEFAULT_KEY_ID, show_default=True, help="application key id clients must send"
)
@click.option(
    "--key-secret",
    default=DEFAULT_KEY_SECRET,
    show_default=False,
    envvar="YD_EMULATOR_KEY_SECRET",
    help="application key secret clients must send (default: 'emulator-secret'; or $YD_EMULATOR_KEY_SECRET)",
)
@click.option(
    "--template",
    "templates",
    multiple=True,
    default=DEFAULT_TEMPLATES,
    show_default=True,
    help="compute requirement template 'namespace/name' the emulator knows (repeatable)",
)
@click.option("--any-template", is_flag=True, help="accept any template id instead of only --template ones")
@click.option("--error-rate", default=0.0, show_default=True, help="share of requests answered 429/5xx")
@click.option("--latency", default=0.0, show_default=True, help="seconds added to every answer")
@click.option(
    "--boot-delay", default=0.0, show_default=True, help="seconds from provisioning to a node registering"
)
@click.option("--fail-tasks", default=None, help="regex: tasks with matching names fail at once")
def emulator_command(
    port: int,
    key_id: str,
    key_secret: str,
    templates: tuple[str, ...],
    any_template: bool,
    error_rate: float,
    latency: float,
    boot_delay: float,
    fail_tasks: str | None,
) -> None:
    """Run a YellowDog platform emulator on loopback until Ctrl+C; its instances are local processes."""
    faults = Faults(error_rate=error_rate, latency_s=latency, boot_delay_s=boot_delay, fail_tasks=fail_tasks)
    emulator = Emulator(
        port=port,
        key_id=key_id,
        key_secret=key_secret,
        templates=templates,
        strict_templates=not any_template,
        faults=faults,
    ).start()
    click.echo(f"YellowDog emulator on {emulator.url}; templates: {', '.join(templates)}")
    exports = {k: v for k, v in emulator.environment().items() if k != "YD_API_KEY_SECRET"}
    click.echo(
        "export "
        + " ".join(f"{k}={v}" for k, v in exports.items())
        + "  # and YD_API_KEY_SECRET (see --key-secret)"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopping: terminating every emulated instance")
    finally:
        leftovers = emulator.stop()
        for line in leftovers:
            click.echo(line, err=True)
