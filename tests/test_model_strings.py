"""A model string's options are checked when the model is made, each with one line that
says what was wrong: not a ``ValueError`` out of ``float()``, not a client that fails at
its first call."""

from __future__ import annotations

import pytest

import convoy
from convoy.models import infer_model
from convoy.models._openai import OpenAIModel


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.mark.parametrize("value", ["abc", "", "-1", "0", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(convoy.UserError, match=rf"timeout='{value}' in model .*a number > 0"):
        infer_model(f"openai:gpt-4o-mini?timeout={value}")


def test_a_timeout_in_seconds_is_taken() -> None:
    model = infer_model("openai:gpt-4o-mini?timeout=2.5")
    assert isinstance(model, OpenAIModel) and model.timeout == 2.5


@pytest.mark.parametrize("url", ["%zz", "ftp://host/v1", "http://", "http://h:99999/v1",
                                 "127.0.0.1:8080/v1"])
def test_a_base_url_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(convoy.UserError, match=r"is not an http\(s\) URL"):
        infer_model(f"openai:m?base_url={url}")
    with pytest.raises(convoy.UserError, match=r"^base_url .* is not an http\(s\) URL"):
        OpenAIModel(model="m", base_url=url)


def test_a_bad_base_url_from_the_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8080")
    with pytest.raises(convoy.UserError, match=r"^\$OPENAI_BASE_URL 'localhost:8080' is not"):
        infer_model("openai:m")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "https://api.example.com/v1",
                                 "http://[::1]:8000/v1"])
def test_http_urls_are_taken(url: str) -> None:
    assert isinstance(infer_model(f"openai:m?base_url={url}"), OpenAIModel)


def test_a_sim_scenario_path_too_long_for_the_file_system_is_a_missing_file() -> None:
    with pytest.raises(convoy.UserError, match="does not exist"):
        infer_model(f"sim:{'x' * 5000}.yaml")


def test_an_error_about_a_model_string_masks_its_api_key_and_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(convoy.UserError) as caught:
        infer_model("openai:gpt-4o-mini?api_key=sk-SECRET&timeout=abc")
    assert "sk-SECRET" not in str(caught.value)
    assert "api_key=***&timeout=abc" in str(caught.value)
    with pytest.raises(convoy.UserError) as caught:
        infer_model("openai:m?base_url=https://user:hunter2@host:xx/v1")
    assert "hunter2" not in str(caught.value) and "user:***@host" in str(caught.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:hunter2@host:xx/v1")
    with pytest.raises(convoy.UserError) as caught:
        infer_model("openai:m")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", [" http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1 "])
def test_a_base_url_with_spaces_around_it_is_refused(url: str) -> None:
    """(``urlsplit`` strips them, the HTTP client does not: every call then failed.)"""
    with pytest.raises(convoy.UserError, match="without spaces around it"):
        OpenAIModel(model="m", base_url=url)


@pytest.mark.parametrize("host", ["h" * 64, f"{'h' * 64}.example.com", "a..b"])
def test_a_postgres_host_name_that_cannot_be_looked_up_is_one_error(host: str) -> None:
    from convoy.stores import store_from_url

    with pytest.raises(convoy.UserError, match="is not a valid host name"):
        store_from_url(f"postgresql://u:pw@{host}/db")
