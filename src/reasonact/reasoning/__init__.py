"""Teacher-guided reasoning: rationales for demonstration steps, written by a teacher."""

from .rationale import SECTIONS, Rationale, RationaleParseError, parse_rationale
from .teachers import OpenAITeacher, PrivilegedTeacher, StepContext, Teacher, make_teacher

__all__ = ["SECTIONS", "Rationale", "RationaleParseError", "parse_rationale", "OpenAITeacher", "PrivilegedTeacher",
           "StepContext", "Teacher", "make_teacher"]
