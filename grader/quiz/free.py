"""Free-response questions: key points found by phrase matching, then the learner's own check.

A `free` question has a model answer and 2 to 5 key points. Each key point lists accepted
phrasings; a key point marked `must_not_claim` is a common wrong statement instead:

    - id: free-sgd-step
      type: free
      prompt: How does SGD use the gradient?
      model_answer: It moves each weight a small step against its gradient ...
      key_points:
        - id: against
          point: The step goes against the gradient (downhill)
          accept: ["against the gradient", "opposite direction gradient", "subtract gradient"]
        - id: grows
          point: Adding the gradient to the weights
          must_not_claim: true
          accept: ["add gradient to weight"]
      wrong_answers: ["It adds the gradient to every weight."]   # examples for the tests

Grading, in two steps:

    answer --tokens+stems--> phrase match per key point --> provisional verdict (found / missing,
                                                              with the words that matched)
           learner sees the model answer, confirms or corrects each point --> final verdict

A phrasing matches when its words' stems appear in the answer in order, within one sentence,
with at most `GAP` other words between two of them, and with the same polarity: a "not" (or
"no", "never", "n't", ...) in or just before the matched words must be matched by one in the
phrasing. So "accuracy is not smooth" does not make the point "accuracy is smooth".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["KeyPoint", "FreeVerdict", "PointResult", "parse_free_fields", "grade_free", "final_verdict", "tokens"]

GAP = 3  # other words allowed between two words of a phrasing
_BEFORE = 2  # words before a match in which a negation flips its polarity
_STOP = {"a", "an", "the", "of", "is", "are", "was", "be", "been", "it", "its", "this", "that", "these", "those", "to"}
_NEGATIONS = {"not", "no", "never", "cannot", "without", "nor", "neither", "none", "nothing"}
_CONTRACTIONS = ((r"\bcan't\b", "can not"), (r"\bwon't\b", "will not"), (r"n't\b", " not"))
_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*|[*@/+=<>-]")
_SENTENCE = re.compile(r"[.;!?](?:\s|$)|\n")
KEY_POINTS_MIN, KEY_POINTS_MAX = 2, 5


@dataclass(frozen=True)
class KeyPoint:
    id: str
    point: str  # the statement, as the learner sees it when checking their answer
    accept: tuple[str, ...]
    must_not_claim: bool = False


@dataclass
class PointResult:
    id: str
    found: bool
    matched: str = ""  # the answer's words that matched ("" when not found)


@dataclass
class FreeVerdict:
    points: list[PointResult] = field(default_factory=list)
    key_points: tuple[KeyPoint, ...] = ()

    def result(self, point_id: str) -> PointResult:
        return next(p for p in self.points if p.id == point_id)

    @property
    def missing(self) -> list[KeyPoint]:
        return [k for k in self.key_points if not k.must_not_claim and not self.result(k.id).found]

    @property
    def tripped(self) -> list[KeyPoint]:
        return [k for k in self.key_points if k.must_not_claim and self.result(k.id).found]

    @property
    def correct(self) -> bool:
        return not self.missing and not self.tripped

    @property
    def fraction(self) -> float:
        """Share of the required points made; 0 when a wrong claim was made."""
        required = [k for k in self.key_points if not k.must_not_claim]
        if self.tripped or not required:
            return 0.0
        return (len(required) - len(self.missing)) / len(required)

    def as_dict(self) -> dict:
        return {p.id: {"found": p.found, "matched": p.matched} for p in self.points}

    def summary(self) -> str:
        if self.correct:
            return f"all {len([k for k in self.key_points if not k.must_not_claim])} key points made"
        parts = []
        if self.missing:
            parts.append("missing: " + "; ".join(k.point for k in self.missing))
        if self.tripped:
            parts.append("wrong claim: " + "; ".join(f'{k.point} ("{self.result(k.id).matched}")' for k in self.tripped))
        return " · ".join(parts)


# ---------------------------------------------------------------------------------------------
# words


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=4096)
def _stem(word: str) -> str:
    if word in _NEGATIONS:
        return "not"
    return _stemmer().stemWord(word)


def tokens(text: str) -> list[list[tuple[str, str]]]:
    """The text as sentences of (stem, word as written) pairs, without the little words in _STOP."""
    text = text.casefold().replace("\u2019", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    sentences = ([(_stem(w), w) for w in _WORD.findall(part) if w not in _STOP] for part in _SENTENCE.split(text))
    return [s for s in sentences if s]


def _phrase_stems(phrase: str) -> list[str]:
    return [s for sentence in tokens(phrase) for s, _ in sentence]


def _negations(stems) -> int:
    return sum(1 for s in stems if s == "not")


def match_phrase(phrase: str, answer_sentences: list[list[tuple[str, str]]]) -> str:
    """The answer's words that match the phrasing, or "" when it does not."""
    stems = _phrase_stems(phrase)
    words = [s for s in stems if s != "not"]
    if not words:
        return ""
    polarity = _negations(stems) % 2
    for sentence in answer_sentences:
        seq = [s for s, _ in sentence]
        for start, stem in enumerate(seq):
            if stem != words[0]:
                continue
            end = _follow(seq, start, words[1:])
            if end is None:
                continue
            window = seq[max(0, start - _BEFORE) : end + 1]
            if _negations(window) % 2 == polarity:
                return " ".join(w for _, w in sentence[start : end + 1])
    return ""


def _follow(seq: list[str], at: int, rest: list[str]) -> int | None:
    """Index of the last word when `rest` follows seq[at] in order with small gaps, else None."""
    for word in rest:
        for step in range(1, GAP + 2):
            if at + step < len(seq) and seq[at + step] == word:
                at += step
                break
        else:
            return None
    return at


def grade_free(key_points: tuple[KeyPoint, ...], answer: str) -> FreeVerdict:
    """The provisional verdict: which key points the answer makes (pure)."""
    sentences = tokens(answer)
    results = []
    for kp in key_points:
        matched = ""
        for phrase in kp.accept:
            matched = match_phrase(phrase, sentences)
            if matched:
                break
        results.append(PointResult(kp.id, bool(matched), matched))
    return FreeVerdict(results, key_points)


def final_verdict(provisional: FreeVerdict, confirmed: dict[str, bool]) -> FreeVerdict:
    """The verdict after the learner (or an instructor's override) corrected some key points."""
    points = [
        PointResult(p.id, bool(confirmed[p.id]), p.matched if confirmed[p.id] else "") if p.id in confirmed else p
        for p in provisional.points
    ]
    return FreeVerdict(points, provisional.key_points)


# ---------------------------------------------------------------------------------------------
# the quiz file

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_KP_KEYS = {"id", "point", "accept", "must_not_claim"}


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def parse_free_fields(item: dict, fail) -> dict:
    """model_answer, key_points and wrong_answers of a free question; `fail(msg)` makes the error."""
    model = item.get("model_answer")
    if not _text(model):
        raise fail("model_answer must be non-empty text (the answer shown after grading)")
    raw = item.get("key_points")
    if not isinstance(raw, list) or not KEY_POINTS_MIN <= len(raw) <= KEY_POINTS_MAX:
        raise fail(f"key_points must be a list of {KEY_POINTS_MIN} to {KEY_POINTS_MAX} key points")
    points: list[KeyPoint] = []
    for number, kp in enumerate(raw, 1):
        points.append(_parse_key_point(kp, number, fail))
    ids = [k.id for k in points]
    if len(set(ids)) != len(ids):
        raise fail("two key points have the same id")
    if all(k.must_not_claim for k in points):
        raise fail("at least one key point must be one the answer should make (not only must_not_claim)")
    wrong = item.get("wrong_answers", [])
    if not isinstance(wrong, list) or not all(_text(w) for w in wrong):
        raise fail("wrong_answers must be a list of example wrong answers (non-empty texts)")
    key_points = tuple(points)
    verdict = grade_free(key_points, model)
    if not verdict.correct:
        raise fail(f"the model answer does not pass its own key points ({verdict.summary()})")
    return dict(model_answer=model.strip(), key_points=key_points, wrong_answers=tuple(w.strip() for w in wrong))


def _parse_key_point(kp, number: int, fail) -> KeyPoint:
    if not isinstance(kp, dict):
        raise fail(f"key point #{number} must be a mapping with id, point and accept")
    extra = sorted(str(k) for k in kp if k not in _KP_KEYS)
    if extra:
        raise fail(f"key point #{number}: unknown key(s) {extra}; allowed: {sorted(_KP_KEYS)}")
    kid = kp.get("id")
    if not isinstance(kid, str) or not _ID.match(kid):
        raise fail(f"key point #{number}: id must be a short name, not {kid!r}")
    if not _text(kp.get("point")):
        raise fail(f"key point '{kid}': point must be non-empty text")
    accept = kp.get("accept")
    if isinstance(accept, str):
        accept = [accept]
    if not isinstance(accept, list) or not accept or not all(_text(a) for a in accept):
        raise fail(f"key point '{kid}': accept must be a non-empty list of phrasings")
    for phrase in accept:
        if not [s for s in _phrase_stems(phrase) if s != "not"]:
            raise fail(f"key point '{kid}': phrasing {phrase!r} has no word to match")
    flag = kp.get("must_not_claim", False)
    if not isinstance(flag, bool):
        raise fail(f"key point '{kid}': must_not_claim must be true or false")
    return KeyPoint(kid, kp["point"].strip(), tuple(a.strip() for a in accept), flag)
