"""Fuzzing the parsers that read untrusted input: they answer or refuse, never crash."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.errors import LessonPackError, NotebookLoadError
from grader.lessons import load_lesson
from grader.notebook import parse_notebook
from grader.wire import WireError, decode

from .conftest import SOLUTIONS

FUZZ = settings(
    max_examples=int(__import__("os").environ.get("LEARN_FUZZ_EXAMPLES", 300)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

cell = st.fixed_dictionaries(
    {
        "cell_type": st.sampled_from(["code", "markdown", "raw", "nonsense", 3]),
        "source": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10)), json_values),
    },
    optional={"metadata": json_values, "outputs": json_values, "id": json_values, "execution_count": json_values},
)
notebookish = st.fixed_dictionaries(
    {"cells": st.one_of(st.lists(cell, max_size=5), json_values), "nbformat": st.sampled_from([3, 4, 4, 5, "4", None])},
    optional={"nbformat_minor": st.one_of(st.integers(-1, 10), json_values), "metadata": json_values, "worksheets": json_values},
)


def parse_or_refuse(raw: bytes):
    try:
        nb = parse_notebook(raw, "fuzz.ipynb")
    except NotebookLoadError as exc:
        assert "fuzz.ipynb" in str(exc)
        return None
    assert isinstance(nb.cells, list)
    for c in nb.cells:
        assert isinstance(c.source, str)
        if c.cell_type == "code":
            assert c.outputs == []
    return nb


@FUZZ
@given(st.binary(max_size=300))
def test_notebook_loader_on_random_bytes(raw):
    parse_or_refuse(raw)


@FUZZ
@given(json_values)
def test_notebook_loader_on_random_json(value):
    parse_or_refuse(json.dumps(value).encode())


@FUZZ
@given(notebookish)
def test_notebook_loader_on_notebook_shaped_json(value):
    parse_or_refuse(json.dumps(value).encode())


@FUZZ
@given(json_values)
def test_wire_decoder_on_random_json(value):
    try:
        decode(value)
    except WireError:
        pass


tagged = st.recursive(
    st.fixed_dictionaries({"t": st.sampled_from(["none", "bool", "int", "float", "str", "npscalar", "foreign", "x"]), "v": json_values}),
    lambda children: st.fixed_dictionaries(
        {
            "t": st.sampled_from(["list", "tuple", "dict", "tensor", "ndarray"]),
            "v": st.lists(children | st.lists(children, max_size=2), max_size=3),
        },
        optional={"dtype": st.sampled_from(["float32", "int64", "object", "bfloat16"]), "shape": json_values, "data": st.text(max_size=12)},
    ),
    max_leaves=10,
)


@FUZZ
@given(tagged)
def test_wire_decoder_on_tag_shaped_json(value):
    try:
        decode(value)
    except WireError:
        pass


toml_scalars = st.one_of(
    st.integers(-5, 1000), st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans(), st.text(max_size=10)
)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzpack") / "pack"
    shutil.copytree(SOLUTIONS / "lesson3", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@FUZZ
@given(
    top=st.dictionaries(st.sampled_from(["id", "title", "order", "version", "bogus"]), toml_scalars, max_size=3),
    defaults=st.dictionaries(st.sampled_from(["rtol", "atol", "points", "cell_timeout", "check_dtype", "nope"]), toml_scalars, max_size=3),
    notebook=st.dictionaries(
        st.sampled_from(["file", "title", "data", "profile", "cell_timeout", "zzz"]),
        toml_scalars | st.lists(toml_scalars, max_size=2),
        max_size=4,
    ),
    check=st.dictionaries(
        st.sampled_from(["notebook", "points", "hints", "rtol", "hidden", "partial_credit", "what"]),
        toml_scalars | st.lists(toml_scalars, max_size=2),
        max_size=4,
    ),
)
def test_manifest_loader_on_random_manifests(pack, top, defaults, notebook, check):
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    lines += ["[defaults]"] + [f"{k} = {toml_value(v)}" for k, v in defaults.items()]
    lines += ["[[notebooks]]"] + [f"{k} = {toml_value(v)}" for k, v in notebook.items()]
    lines += ["[checks.quad]"] + [f"{k} = {toml_value(v)}" for k, v in check.items()]
    (pack / "lesson.toml").write_text("\n".join(lines) + "\n")
    try:
        load_lesson(pack)
    except LessonPackError as exc:
        assert "lesson.toml" in str(exc)


@FUZZ
@given(st.text(max_size=200))
def test_manifest_loader_on_random_text(pack, text):
    (pack / "lesson.toml").write_text(text)
    try:
        load_lesson(pack)
    except LessonPackError as exc:
        assert "lesson.toml" in str(exc)


question = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["q1", "q2", "q1"]), json_values),
        "type": st.sampled_from(["single", "multiple", "numeric", "text", "code", "free", "essay", 7]),
    },  # fmt: skip
    optional={
        "prompt": st.one_of(st.text(max_size=20), json_values),
        "options": st.one_of(st.lists(st.text(max_size=5), max_size=4), json_values),
        "answer": json_values,
        "answers": json_values,
        "keywords": json_values,
        "tolerance": st.one_of(st.floats(allow_nan=True), json_values),
        "explanation": st.one_of(st.text(max_size=20), json_values),
        "topic": json_values,
        "function": st.one_of(st.sampled_from(["f", "def", "1x"]), json_values),
        "reference": st.one_of(st.sampled_from(["def f(x):\n    return x\n", "def f(:\n", "import os\n"]), json_values),
        "cases": json_values,
        "model_answer": st.one_of(st.sampled_from(["a b", "subtract the gradient"]), json_values),
        "key_points": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "id": st.sampled_from(["k1", "k2"]),
                        "point": st.just("p"),
                        "accept": st.sampled_from([["a"], ["b"], ["gradient"], "x"]),
                    }
                ),
                max_size=3,
            ),
            json_values,
        ),  # fmt: skip
        "wrong_answers": json_values,
        "params": st.one_of(st.just({"n": {"int": [1, 3]}}), json_values),
    },
)
quiz_docs = st.one_of(
    st.lists(question, max_size=4),
    st.fixed_dictionaries(
        {"questions": st.one_of(st.lists(question, max_size=4), json_values)},
        optional={"id": json_values, "title": json_values, "description": json_values},
    ),  # fmt: skip
    json_values,
)


@FUZZ
@given(quiz_docs)
def test_quiz_parser_on_quiz_shaped_documents(doc):
    import yaml

    from grader.errors import QuizFormatError
    from grader.quiz import parse_quiz

    try:
        quiz = parse_quiz(yaml.safe_dump(doc, allow_unicode=True), "fuzz.yaml")
    except QuizFormatError as exc:
        assert "fuzz.yaml" in str(exc)
        return
    ids = [q.id for q in quiz.questions]
    assert len(ids) == len(set(ids)), "duplicate ids must be refused"
