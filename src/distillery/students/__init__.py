"""Student model families, registered by name; importing this package registers them all."""

from distillery.students.base import STUDENTS, load_student, save_student
from distillery.students import bilstm  # noqa: F401  (registers "bilstm")
from distillery.students import fastbert  # noqa: F401  (registers "fastbert")
from distillery.students import multitask  # noqa: F401  (registers "mtdnn")
from distillery.students import seq2seq  # noqa: F401  (registers "seq2seq")
from distillery.students import transformer  # noqa: F401  (bert, distilbert, pkd_skip, pkd_last, tinybert, mobilebert)

__all__ = ["STUDENTS", "load_student", "save_student"]
