"""The package's errors: every error a user can cause derives from :class:`CourseError`, whose
message says what to do. Each class also derives from the built-in error it stands for
(``ValueError`` for a bad setting, ``FileExistsError`` for an output already there, ...), so
code that catches those keeps working. The command line catches :class:`CourseError` for every
subcommand and prints one line, never a traceback."""


class CourseError(Exception):
    """An error a user can fix; the message says how."""


class SettingError(CourseError, ValueError):
    """A setting or argument that cannot be used (out of range, unknown name, wrong type)."""


class OutputExistsError(CourseError, FileExistsError):
    """An output is already there and would be replaced: pass overwrite, or choose another name."""


class MissingFileError(CourseError, FileNotFoundError):
    """A file the step needs is not where it was looked for."""


class MissingPackageError(CourseError, ImportError):
    """An optional package is not installed."""


class UnknownIdError(CourseError, KeyError):
    """An image id that the dataset does not hold."""

    def __str__(self) -> str:          # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
