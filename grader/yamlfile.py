"""One reader for the YAML files learners and instructors hand us (quizzes, answers, overrides).

    text ──► yaml.safe_load ──► data      any failure ──► error(f"{source}: not valid YAML: <first line>")

`error` is the LearnError subclass the caller's command reports (QuizFormatError for a quiz file,
QuizAnswersError for an answers or overrides file), so each keeps its own exit code.
"""

from __future__ import annotations

__all__ = ["load_yaml"]


def load_yaml(text: str, source: str, error: type[Exception]):
    import yaml

    try:
        return yaml.safe_load(text)
    except Exception as exc:  # YAMLError, and the odd ValueError/RecursionError of hostile input
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{source}: not valid YAML: {problem}") from None
