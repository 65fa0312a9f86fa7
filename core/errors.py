"""The exception hierarchy of forge-launcher.

The CLI prints these without a traceback: a :class:`UserError` exits with 2,
any other :class:`ForgeLauncherError` with 1.
"""

from __future__ import annotations


class ForgeLauncherError(Exception):
    """A failure the launcher can explain in one or two plain sentences."""

    exit_code = 1


class UserError(ForgeLauncherError):
    """A failure caused by the user's input: config, overrides, names, arguments."""

    exit_code = 2


class ConfigError(UserError):
    """The job config is missing, cannot be parsed, or has an invalid value."""


class PluginError(ForgeLauncherError):
    """A plugin is invalid or two plugins conflict."""


class PreflightError(UserError):
    """A check before submission failed, so nothing was queued."""


class JobNotFoundError(UserError):
    """No recorded job matches the given name or handle."""


class ProvisionError(ForgeLauncherError):
    """Worker meshes did not come up, or a worker died while the job ran."""
