"""Retainer-shaped input checked field by field, each problem named by its path
(`clients[2].retainer.monthly_hours: must be a positive number`): shared by `retainer import` and the
CRM hand-off, so a person reads the same sentence for the same mistake wherever they made it."""

from __future__ import annotations

import datetime as dt
import difflib
import re
import types
import typing
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

Loc = Sequence[str | int]
OWN_ERROR_TYPES = {"retainer_import"}


def format_path(loc: Loc) -> str:
    """`("clients", 2, "retainer", "monthly_hours")` -> `clients[2].retainer.monthly_hours`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def problem(loc: Loc, message: str) -> str:
    path = format_path(loc)
    return f"{path}: {message}" if path else message


def own_error(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("retainer_import", message, context)


def message_for(error: Any, model: type[BaseModel], loc: Loc) -> str:
    """A short sentence for one pydantic error (its defaults read like a parser's, not a person's)."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if kind in OWN_ERROR_TYPES:
        return str(error["msg"])
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        allowed = fields_at(model, loc[:-1])
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean “{close[0]}”?"
        return "unknown key; expected one of " + ", ".join(allowed) if allowed else "unknown key"
    if error.get("input", ...) is None:
        return "has no value"
    if isinstance(error.get("input"), bool) and kind in ("int_type", "float_type"):
        wanted = "a whole number" if kind == "int_type" else "a number"
        return f"must be {wanted}, not {str(error['input']).lower()}"
    if kind == "greater_than":
        return "must be a positive number" if ctx.get("gt") == 0 else f"must be more than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return "must be 0 or more" if ctx.get("ge") == 0 else f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    if kind == "too_short":
        return "must name at least one person" if ctx.get("min_length") == 1 else "is too short"
    return {
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "finite_number": "must be a number",
        "string_type": "must be text",
        "string_too_short": "must not be empty",
        "string_too_long": "is too long",
        "list_type": "must be a list",
        "dict_type": "must be a mapping of keys to values",
        "model_type": "must be a mapping of keys to values",
        "model_attributes_type": "must be a mapping of keys to values",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
    }.get(kind, str(error.get("msg", "is not valid")))


def fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model accepts at `loc`, for "did you mean" on an unknown key."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if typing.get_origin(current) is list and args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation


M = TypeVar("M", bound=BaseModel)


def validate_into(
    model: type[M], raw: Any, loc: Loc, errors: list[str], *, described_by: type[BaseModel] | None = None
) -> M | None:
    """`raw` as a `model`, or None with its problems in `errors` (keys suggested from `described_by`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            inner = tuple(error["loc"])
            errors.append(problem((*loc, *inner), message_for(error, described_by or model, inner)))
        return None


# --- the values a retainer is made of -------------------------------------------------------------


def to_minutes(hours: float) -> int:
    """Hours as whole minutes, rounded half up (no float drift: 1.1 h is 66 minutes)."""
    return int((Decimal(str(hours)) * 60).quantize(Decimal(1), ROUND_HALF_UP))


def to_cents(amount: float | None) -> int | None:
    if amount is None:
        return None
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), ROUND_HALF_UP))


def check_date(value: Any) -> Any:
    # A plain YYYY-MM-DD only: pydantic would read a bare number as a Unix timestamp.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    if value is None:
        return value
    raise own_error("must be a date like 2026-01-31")


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise own_error("unknown timezone “{tz}”", tz=value) from None
    return value


def check_country(value: str) -> str:
    """An ISO 3166 alpha-2 code the holidays package has a calendar for (its aliases, such as USA
    or UK, are not ISO alpha-2 codes: they are refused with the code they stand for)."""
    code = value.upper()
    if code not in holidays.list_supported_countries():
        raise own_error("unknown country code “{code}”", code=value)
    iso = getattr(holidays, code).country
    if code != iso:
        raise own_error(
            "“{code}” is not an ISO 3166 two-letter country code; did you mean {iso}?", code=value, iso=iso
        )
    return code


def check_currency(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise own_error("must be 3 uppercase letters, like USD")
    return value


def check_slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
        raise own_error("must be lowercase letters, digits and hyphens, like “acme-corp”")
    return value


def check_email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise own_error("“{value}” is not an email address", value=value)
    return value.lower()


# Numbers are numbers: strict, so `true` is not 1 hour and "40" is not 40 (YAML already reads 40 as
# a number; a quoted one is text someone meant as text; JSON keeps them apart too).
Hours = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
Count = Annotated[int, Field(strict=True)]
Day = Annotated[dt.date, BeforeValidator(check_date)]
TimezoneName = Annotated[str, AfterValidator(check_timezone)]
CountryCode = Annotated[str, AfterValidator(check_country)]
Currency = Annotated[str, AfterValidator(check_currency)]
Slug = Annotated[str, AfterValidator(check_slug)]
Email = Annotated[str, AfterValidator(check_email)]
