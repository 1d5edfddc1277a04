"""What grading one assignment rests on, shared by `learn assign` (its self-test) and `learn grade`:

    lesson pack ─► default_seed(lesson)   the inputs' seed, derived from the pack: the self-test and every
                                          grade of the assignment share cached reference results
               ─► lesson_grader(lesson)   the engine of `learn check` knowing exactly this one lesson

A home of their own, so that `assign` and `batch` need not import each other.
"""

from __future__ import annotations

import hashlib

from .lessons import Lesson

__all__ = ["default_seed", "lesson_grader"]


def default_seed(lesson: Lesson) -> int:
    """The seed of an assignment unless one is given: derived from the pack, so `learn assign`'s
    self-test and every `learn grade` of it share cached reference results."""
    return int(hashlib.sha256(f"{lesson.id}:{lesson.fingerprint()}".encode()).hexdigest()[:8], 16) % 10**6 + 1


def lesson_grader(lesson: Lesson, **options):
    """A `grading.Grader` (the engine of `learn check`) that knows exactly one lesson: the
    assignment, wherever its pack lives (bundled, installed, or a `learn assign` folder)."""
    from .grading import Grader

    return Grader(lessons={lesson.id: lesson}, **options)
