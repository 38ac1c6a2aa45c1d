"""Exceptions of the ``stream`` package. Each message names the input that caused it."""

from __future__ import annotations


class SednayaError(Exception):
    """Base class of every domain error the CLI maps to an exit code."""


class ContractError(SednayaError, ValueError):
    """A record does not follow the article contract (the message names the field)."""


class UnsupportedSchemaError(ContractError):
    """A record carries a contract version this build cannot read (dead-lettered, not crashed on)."""


class SettingsError(SednayaError, ValueError):
    """A setting has an invalid value (the message names the variable or key and the value)."""


class TopicError(SednayaError, ValueError):
    """The topic file is missing or malformed (the message names the file and the key)."""


class BusError(SednayaError):
    """The bus could not deliver or store a record."""


class EmbeddingError(SednayaError):
    """The embedding model could not be loaded or failed on a batch."""


class UnavailableError(SednayaError):
    """A dependency (broker, store, mail server) cannot be reached now.

    Stages never dead-letter a record for this: the worker keeps the batch uncommitted, turns the
    process health red with this message and retries with backoff until the dependency is back.
    """


class StoryStateError(SednayaError):
    """The clustering stage's story state (SQLite in the data directory) cannot be read or written."""


class DataDirLockedError(SednayaError):
    """Another process holds the data directory for a stage that needs it alone (the message names the
    directory, the holder's pid and command, and how long this one waited)."""


class InputError(SednayaError):
    """An input file cannot be read (the message names the file and how far it was read)."""


class GroupActiveError(BusError):
    """A consumer group's offsets cannot be moved while it has active members (the message names the group)."""
