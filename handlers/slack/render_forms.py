"""Block Kit modals from the core's neutral forms, and a submitted modal's values read back: pure
functions, and the only place that knows the limits of modals and their inputs."""

from __future__ import annotations

from typing import Any

from bot.replies import (
    ChoiceInput,
    Context,
    DateInput,
    Field,
    Form,
    NumberInput,
    Option,
    PeopleInput,
    TextInput,
)
from handlers.slack.render import clip, render_block

MAX_MODAL_BLOCKS = 100
MAX_MODAL_TITLE = 24  # also the submit and close buttons
MAX_LABEL = 2000
MAX_HINT = 2000
MAX_PLACEHOLDER = 150
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_STATIC_OPTIONS = 100  # a longer list becomes an external_select searched as the person types
MAX_PRIVATE_METADATA = 3000
MAX_INPUT_CHARS = 3000


def callback_id(kind: str) -> str:
    """The modal's callback_id for a neutral form kind ("feedback" -> "feedback_form")."""
    return f"{kind}_form"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def render_option(option: Option) -> dict[str, Any]:
    return {"text": _plain(option.label, MAX_OPTION_TEXT), "value": option.value[:MAX_OPTION_VALUE]}


def _choice(field: ChoiceInput) -> dict[str, Any]:
    options = [render_option(o) for o in field.options]
    initial = [render_option(o) for o in field.options if o.value in field.initial]
    if len(options) > MAX_STATIC_OPTIONS and field.source:
        element: dict[str, Any] = {
            "type": "multi_external_select" if field.multiple else "external_select",
            "min_query_length": 0,
        }
    else:
        # Without a source to search, a list this long can only be cut; the core keeps them short.
        options = options[:MAX_STATIC_OPTIONS]
        initial = [o for o in initial if o in options]
        element = {"type": "multi_static_select" if field.multiple else "static_select", "options": options}
    if initial and field.multiple:
        element["initial_options"] = initial
    elif initial:
        element["initial_option"] = initial[0]
    return element


def render_element(field: Field) -> dict[str, Any]:
    match field:
        case TextInput():
            limit = min(field.max_length or MAX_INPUT_CHARS, MAX_INPUT_CHARS)
            element: dict[str, Any] = {
                "type": "plain_text_input",
                "multiline": field.multiline,
                "max_length": limit,
            }
            if field.initial:
                element["initial_value"] = field.initial[:limit]
            if field.placeholder:
                element["placeholder"] = _plain(field.placeholder, MAX_PLACEHOLDER)
        case NumberInput():
            element = {"type": "number_input", "is_decimal_allowed": True}
            if field.min_value is not None:
                element["min_value"] = f"{field.min_value:g}"
            if field.max_value is not None:
                element["max_value"] = f"{field.max_value:g}"
            if field.initial:
                element["initial_value"] = field.initial
        case DateInput():
            element = {"type": "datepicker"}
            if field.initial:
                element["initial_date"] = field.initial.isoformat()
        case PeopleInput():
            if field.multiple:
                element = {"type": "multi_users_select"}
                if field.initial:
                    element["initial_users"] = list(field.initial)
            else:
                element = {"type": "users_select"}
                if field.initial:
                    element["initial_user"] = field.initial[0]
        case ChoiceInput():
            element = _choice(field)
        case _:
            raise TypeError(f"cannot render {field!r}")
    return {**element, "action_id": field.key}


def render_input(field: Field) -> dict[str, Any]:
    if isinstance(field, ChoiceInput) and not field.options:
        # Slack refuses a select without options: say what the field would have offered instead.
        return render_block(Context(f"**{field.label}**: none to choose from. {field.hint}".strip()))[0]
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field.key,
        "label": _plain(field.label, MAX_LABEL),
        "optional": field.optional,
        "element": render_element(field),
    }
    if field.hint:
        block["hint"] = _plain(field.hint, MAX_HINT)
    return block


def render_modal(form: Form) -> dict[str, Any]:
    """The modal view for views.open. The intro gives way first if the blocks would not fit."""
    inputs = [render_input(f) for f in form.fields]
    intro = [rendered for block in form.intro for rendered in render_block(block)]
    intro = intro[: max(0, MAX_MODAL_BLOCKS - len(inputs))]
    if len(form.state) > MAX_PRIVATE_METADATA:
        raise ValueError("a form's state must fit Slack's private_metadata; keep state in the database")
    return {
        "type": "modal",
        "callback_id": callback_id(form.kind),
        "title": _plain(form.title, MAX_MODAL_TITLE),
        "submit": _plain(form.submit, MAX_MODAL_TITLE),
        "close": _plain("Cancel", MAX_MODAL_TITLE),
        "private_metadata": form.state,
        "blocks": [*intro, *inputs][:MAX_MODAL_BLOCKS],
    }


def form_values(view: dict[str, Any]) -> dict[str, object]:
    """A submitted modal's values by field key: text as str, several people or options as lists. A
    value of the wrong type counts as not given (the form's checks then say what is missing)."""

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    def texts(items: object, key: str | None = None) -> list[str]:
        if not isinstance(items, list):
            return []
        picked = [(i.get(key) if isinstance(i, dict) else None) if key else i for i in items]
        return [p for p in picked if isinstance(p, str)]

    values: dict[str, object] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for state in actions.values():
            kind = state.get("type")
            if kind in ("plain_text_input", "number_input"):
                value: object = text(state.get("value"))
            elif kind == "datepicker":
                value = text(state.get("selected_date"))
            elif kind == "users_select":
                value = text(state.get("selected_user"))
            elif kind == "multi_users_select":
                value = texts(state.get("selected_users"))
            elif kind in ("static_select", "external_select"):
                option = state.get("selected_option")
                value = text(option.get("value")) if isinstance(option, dict) else None
            elif kind in ("multi_static_select", "multi_external_select"):
                value = texts(state.get("selected_options"), "value")
            else:
                continue
            values[block_id] = value
    return values
