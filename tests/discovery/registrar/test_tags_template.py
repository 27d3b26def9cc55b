"""The --tags template subset."""

from __future__ import annotations

import pytest

from discovery.registrar.tags_template import TagsTemplate, TemplateError, split_tags

CONTAINER = {
    "Id": "abc",
    "Name": "/web",
    "Config": {"Hostname": "Box1", "Labels": {"com.example.team": "Payments", "n": 3}},
    "State": {"Running": True},
}


def test_static_tags_split_on_commas() -> None:
    template = TagsTemplate.parse("a, b,,c")
    assert template.static
    assert template.render({}) == ("a", "b", "c")


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("{{.Config.Hostname}}", ("Box1",)),
        ("host-{{ .Config.Hostname }},x", ("host-Box1", "x")),
        ('{{index .Config.Labels "com.example.team"}}', ("Payments",)),
        ('{{toLower (index .Config.Labels "com.example.team")}}', None),
        ("{{toLower .Config.Hostname}}", ("box1",)),
        ("{{toUpper .Name}}", ("/WEB",)),
        ("{{.ID}}", ("abc",)),  # go-dockerclient's field name for Docker's "Id"
        ("{{.Missing.Field}},kept", ("kept",)),
        ("{{.Config.Labels}}", ()),  # a map is not rendered
        ("{{.State.Running}}", ("true",)),
        ('{{index .Config.Labels "n"}}', ("3",)),
    ],
)
def test_actions(text: str, tags: tuple[str, ...] | None) -> None:
    if tags is None:
        with pytest.raises(TemplateError):
            TagsTemplate.parse(text)
        return
    template = TagsTemplate.parse(text)
    assert not template.static
    assert template.render(CONTAINER) == tags


@pytest.mark.parametrize(
    "text", ['{{join .Config.Env ","}}', "{{.Config.Hostname", "a}}", "{{ }}", '{{index .X "unterminated}}']
)
def test_unsupported_or_broken_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        TagsTemplate.parse(text)


def test_split_tags_escapes_and_dedupes() -> None:
    assert split_tags(r"a\,b,c, a\,b ,") == ("a,b", "c")
