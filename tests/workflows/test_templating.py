from __future__ import annotations

from typing import Any

import pytest

from taskgate.workflows.definitions.template_sandbox import MAX_OUTPUT_CHARS
from taskgate.workflows.definitions.templating import (
    MAX_TEMPLATE_CHARS,
    TemplateError,
    check_template,
    evaluate_condition,
    render_string,
    render_value,
    template_context,
)
from taskgate.workflows.engine.secret_redaction import redact_secrets


class Opaque:
    """An object someone put in the context; its private parts must stay private."""

    def __init__(self) -> None:
        self._private = "hidden"
        self.public = "shown"


@pytest.fixture
def context() -> dict[str, Any]:
    return template_context(
        event={
            "type": "order.created",
            "payload": {"order_id": "A-17", "amount": 150, "items": ["pen", "ink"], "_id": 9},
        },
        input={"region": "eu", "flag": False},
        steps={"check": {"output": {"amount": 150, "ok": True}}},
        execution={"id": "e-1", "obj": Opaque()},
        secrets={"API_TOKEN": "tok-3f9a"},
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ event.payload.amount }}", 150),
        ("{{ event.payload.order_id }}", "A-17"),
        ("{{ steps.check.output }}", {"amount": 150, "ok": True}),
        ("{{ input.flag }}", False),
        ("{{ event.payload.missing | default(None) }}", None),
        ("{{- event.payload.amount -}}", 150),
        ("{{ event.payload.amount * 2 }}", 300),
        ("{{ event.payload['items'] | length }}", 2),
        ("{{ range(3) }}", [0, 1, 2]),
        ("Order {{ event.payload.order_id }}", "Order A-17"),
        (" {{ event.payload.amount }}", " 150"),
        ("{{ event.payload.amount }}{{ input.region }}", "150eu"),
        ("data: {{ steps.check.output }}", 'data: {"amount": 150, "ok": true}'),
        ("{% if input.region == 'eu' %}EU{% else %}other{% endif %}", "EU"),
        ("plain text", "plain text"),
    ],
)
def test_render_value_keeps_native_types_for_a_lone_expression(
    context: dict[str, Any], template: str, expected: Any
) -> None:
    assert render_value(template, context) == expected


def test_render_string_always_gives_text(context: dict[str, Any]) -> None:
    assert render_string("{{ event.payload.amount }}", context) == "150"
    assert render_string("{{ event.payload['items'] }}", context) == '["pen", "ink"]'
    assert render_string("line\n", context) == "line\n"
    assert render_string("{{ input.region }}\n", context) == "eu\n"


def test_render_value_renders_deeply_and_leaves_keys_and_non_strings_alone(
    context: dict[str, Any],
) -> None:
    value = {
        "url": "https://api.example.com/orders/{{ event.payload.order_id }}",
        "json": {"amount": "{{ event.payload.amount }}", "tags": ["{{ input.region }}", 3]},
        "{{ not.a.key.template }}": None,
    }

    assert render_value(value, context) == {
        "url": "https://api.example.com/orders/A-17",
        "json": {"amount": 150, "tags": ["eu", 3]},
        "{{ not.a.key.template }}": None,
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'abc' | replace('b', 'x') }}", "axc"),
        ("{{ ['ab', 'cb'] | map('replace', 'b', 'z') | join(',') }}", "az,cz"),
        ("{{ 'ab' | center(6) }}", "  ab  "),
        ("{{ 'a\nb' | indent(2) }}", "a\n  b"),
        ("{{ '%s-%05.1f' | format('n', 2) }}", "n-002.0"),
        ("{{ '{}-{:>4}'.format('n', 7) }}", "n-   7"),
        ("{{ '%s/%s' % ('a', 'b') }}", "a/b"),
        ("{{ [{'n': {'m': 1}}, {'n': {'m': 2}}] | join('+', attribute='n.m') }}", "1+2"),
        ("{{ '-'.join(['a', 'b']) }}", "a-b"),
        ("{{ 'x'.ljust(3, '.') ~ 'y' * 2 ~ ([1] + [2]) }}", "x..yy[1, 2]"),
        ("{{ 2 ** 10 }}", 1024),
    ],
)
def test_guarded_filters_and_operators_still_work(
    context: dict[str, Any], template: str, expected: Any
) -> None:
    assert render_value(template, context) == expected


def test_json_keys_win_over_dict_methods(context: dict[str, Any]) -> None:
    assert render_value("{{ event.payload.items }}", context) == ["pen", "ink"]
    assert render_value("{{ event.payload._id }}", context) == 9


def test_missing_values_fail_unless_defaulted(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="no attribute 'nope'"):
        render_value("Hello {{ event.payload.nope }}", context)
    with pytest.raises(TemplateError, match="'nothing' is undefined"):
        render_value("{{ nothing }}", context)

    assert render_value("{{ event.payload.nope.deeper | default('n/a') }}", context) == "n/a"
    assert render_value("{{ 'yes' if event.payload.nope is defined else 'no' }}", context) == "no"


def test_errors_say_where_in_the_value_they_happened(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value({"headers": {"X-Id": "{{ event.nope }}"}, "list": []}, context)

    assert caught.value.path == "headers.X-Id"
    assert caught.value.template == "{{ event.nope }}"
    assert str(caught.value).startswith("headers.X-Id: ")


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ self.__init__.__globals__ }}",
        "{{ config }}",
        "{{ config.items() }}",
        "{{ request.application.__globals__ }}",
        "{{ execution.obj._private }}",
        "{{ execution.obj.__dict__ }}",
        "{{ event.__class__.__base__.__subclasses__() }}",
        "{{ event.payload['items'].append('x') }}",
        "{{ dict.mro() }}",
        "{{ range.__self__ }}",
        "{{ (event.payload.update({'x': 1})) }}",
        "{{ '{0.__class__}'.format(event) }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ event|attr('__class__') }}",
        "{% macro m() %}{% endmacro %}",
        "{% include 'etc/passwd' %}",
        "{% import 'x' as x %}",
        "{% extends 'x' %}",
    ],
)
def test_template_injection_payloads_are_refused(context: dict[str, Any], payload: str) -> None:
    with pytest.raises(TemplateError):
        render_value(payload, context)
    with pytest.raises(TemplateError):
        render_string(f"x {payload} y", context)


def test_public_attributes_of_context_objects_still_work(context: dict[str, Any]) -> None:
    assert render_value("{{ execution.obj.public }}", context) == "shown"


def test_expression_results_must_be_json_data(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="not JSON data"):
        render_value("{{ event.payload.get }}", context)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 10**9 }}",
        "{{ ['a'] * 10**9 }}",
        "{{ 10 ** 100000000 }}",
        "{{ '%999999999s' % 1 }}",
        "{{ '%.*f' % (99999999, 1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:{w}}'.format(1, w=999999999) }}",
        "{{ '%999999999s' | format(1) }}",
        "{{ 'x' | center(999999999) }}",
        "{{ 'x' | indent(999999999, true) }}",
        "{{ 'x'.ljust(999999999) }}",
        "{{ 'x'.zfill(999999999) }}",
        "{{ ('x' * 1000000).replace('x', 'yy') }}",
        "{{ ('x' * 1000000) | replace('x', 'yy') }}",
        "{{ ('\t' * 1000000).expandtabs(8) }}",
        "{{ ('x' * 1000000) ~ ('x' * 1000000) }}",
        "{{ ('x' * 1000000) + ('x' * 1000000) }}",
        "{{ range(10**6) | list }}",
        "{{ range(10000) | map('string') | map('center', 1000) | join }}",
        "{{ ','.join(range(10000) | map('string') | map('center', 1000)) }}",
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    ],
)
def test_output_and_memory_limits(context: dict[str, Any], template: str) -> None:
    with pytest.raises(TemplateError, match="limit"):
        render_value(template, context)


def test_template_length_is_capped(context: dict[str, Any]) -> None:
    long = "{{ 1 }}" + "x" * MAX_TEMPLATE_CHARS

    with pytest.raises(TemplateError, match="longer than"):
        render_value(long, context)
    with pytest.raises(TemplateError, match="longer than"):
        check_template(long)


def test_long_templates_render_like_short_ones(context: dict[str, Any]) -> None:
    long = "{{ input.region }}" + "." * 20_000

    assert render_value(long, context) == "eu" + "." * 20_000
    assert evaluate_condition("input.region != '" + "x" * 20_000 + "'", context) is True


def test_absurdly_nested_expressions_fail_cleanly(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="nested too deeply"):
        evaluate_condition("true" + " and true" * 5_000, context)


def test_output_just_under_the_cap_renders(context: dict[str, Any]) -> None:
    rendered = render_value("{{ 'x' * " + str(MAX_OUTPUT_CHARS) + " }}", context)

    assert rendered == "x" * MAX_OUTPUT_CHARS


def test_check_template_reports_syntax_errors_without_a_context() -> None:
    check_template("fine {{ event.payload.x }}")
    check_template("no template at all {")

    with pytest.raises(TemplateError, match="unexpected end of template"):
        check_template("{{ event.payload.x ")
    with pytest.raises(TemplateError, match="macros"):
        check_template("{% macro f() %}{% endmacro %}")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("steps.check.output.amount > 100", True),
        ("steps.check.output.amount > 1000", False),
        ("{{ steps.check.output.amount > 100 }}", True),
        ("  {{ input.region == 'us' }}  ", False),
        ("steps.check.output.ok and input.region == 'eu'", True),
        ("input.flag", False),
        ("event.payload['items']", True),
        ("input.nothing | default(false)", False),
        ("{% if input.region == 'eu' %}true{% else %}false{% endif %}", True),
        ("{{ 'false' }}", False),
        ("{{ 'Yes' }}", True),
    ],
)
def test_evaluate_condition(context: dict[str, Any], expression: str, expected: bool) -> None:
    assert evaluate_condition(expression, context) is expected


def test_a_condition_rendering_other_text_is_an_error(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="gave the text 'eu-eu', not true or false"):
        evaluate_condition("{{ input.region }}-{{ input.region }}", context)


def test_a_condition_on_missing_data_fails_instead_of_guessing(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="no attribute 'missing'"):
        evaluate_condition("steps.check.output.missing > 100", context)
    with pytest.raises(TemplateError):
        evaluate_condition("steps.check.output.amount >", context)
    with pytest.raises(TemplateError, match="unsafe"):
        evaluate_condition("event.__class__", context)


def test_secrets_render_and_are_redacted_before_storing(context: dict[str, Any]) -> None:
    rendered = render_value(
        {
            "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
            "url": "https://x/?t={{ secrets.API_TOKEN | urlencode }}",
            "count": 3,
        },
        context,
    )
    assert rendered["headers"]["Authorization"] == "Bearer tok-3f9a"

    assert redact_secrets(rendered, context["secrets"].values()) == {
        "headers": {"Authorization": "Bearer ***"},
        "url": "https://x/?t=***",
        "count": 3,
    }


def test_redaction_covers_escaped_forms_nested_values_and_overlapping_secrets() -> None:
    secrets = ['pa ss/"word', "pa", ""]
    value = {
        "raw": 'pa ss/"word!',
        "json": '{"p": "pa ss/\\"word"}',
        "url": "?p=pa%20ss%2F%22word&q=pa+ss%2F%22word",
        "list": [("x pa y",), {"pa-key": 1}],
        "number": 1234,
    }

    assert redact_secrets(value, secrets) == {
        "raw": "***!",
        "json": '{"p": "***"}',
        "url": "?p=***&q=***",
        "list": [("x *** y",), {"***-key": 1}],
        "number": 1234,
    }
    assert redact_secrets(value, [""]) == value
    assert redact_secrets("nothing to hide", []) == "nothing to hide"


def test_template_errors_may_quote_secrets_so_they_are_redacted_too(
    context: dict[str, Any],
) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value("{{ {'a': 1}[secrets.API_TOKEN] }}", context)

    assert "tok-3f9a" not in redact_secrets(str(caught.value), ["tok-3f9a"])


def test_template_context_defaults() -> None:
    assert template_context() == {
        "event": {},
        "input": {},
        "steps": {},
        "execution": {},
        "secrets": {},
    }


def test_recursing_too_deep_while_rendering_is_a_template_error() -> None:
    # A short template, fine on save, that recurses once per level of data a webhook or an
    # earlier step may hand it: the step fails with a TemplateError that says why.
    walk = "{% for item in input.tree recursive %}[{{ loop(item) }}]{% endfor %}"
    check_template(walk)
    tree: list[Any] = []
    for _ in range(400):
        tree = [tree]
    with pytest.raises(TemplateError) as caught:
        render_value({"template": walk}, template_context(input={"tree": tree}))
    assert caught.value.message.startswith("template limit: nested too deeply")
    assert caught.value.path == "template"
    shallow = render_value({"template": walk}, template_context(input={"tree": [[[]]]}))
    assert shallow == {"template": "[[]]"}
