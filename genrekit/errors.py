"""The exception family of the toolkit: every expected failure is a ``GenrekitError``.

Messages name the value or the path and the cause, in one line, so a script can print
``error: <message>`` and a user knows what to fix.
"""


class GenrekitError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class ConfigError(GenrekitError, ValueError):
    """A configuration key, type or value that cannot work."""


class DatasetError(GenrekitError):
    """Metadata or dataset layout that is missing or malformed."""


class AudioDecodeError(GenrekitError):
    """An audio file that cannot be decoded into usable segments."""


class TruncatedAudioError(AudioDecodeError):
    """An audio file whose decoding stops well before the length its header declares."""


class CacheError(GenrekitError):
    """A feature cache that is missing, incomplete or built with other parameters."""


class CacheDamageError(CacheError):
    """Feature cache rows whose bytes are not what was written (checksum mismatch, not finite).

    ``damaged`` holds one :class:`~genrekit.features.cache.parts.Damage` per row (track, part, reason).
    """

    def __init__(self, message: str, damaged: list | None = None) -> None:
        super().__init__(message)
        self.damaged = damaged or []


class DownloadError(GenrekitError):
    """A download that failed (HTTP error, too many retries, no disk space)."""


class ChecksumError(DownloadError):
    """A file whose checksum (sha1, sha256) does not match the expected one."""


class UnsafeArchiveError(DownloadError):
    """An archive member that would be written outside the target folder."""


class ModelError(GenrekitError):
    """A model or model configuration that is missing or does not match."""


class ParameterError(GenrekitError, ValueError):
    """An argument whose value or shape a function cannot use (e.g. ``k=0 must be a positive integer``).

    Also a ``ValueError``, as these were before the family covered them.
    """


class ParameterTypeError(GenrekitError, TypeError):
    """An argument of a type a function cannot read; also a ``TypeError``."""


class EngineError(GenrekitError):
    """An execution engine that cannot run: its package not installed, its cluster unreachable."""


class OutputPathError(GenrekitError):
    """An output path that must not be written: one of the run's inputs, someone's audio, not a
    regular file (a link, a FIFO, a device, a folder), or a file genrekit did not write."""


class OutputInUseError(OutputPathError):
    """An output that holds the results of another job (another folder, model or settings)."""
