"""serving/_settings.py: what the builder arguments accept (the case models' tasks, the upload limit against the
calls between deployments, CORS methods) and what they make of the environment (the API token, the case
database's URL). No Ray needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving._http import REPLICA_HTTP
from serving._model_servers import configure_replica
from serving._settings import (
    GRPC_MESSAGE_ENV,
    POSTGRES_URL_FORM,
    CaseArgs,
    ConfigError,
    CorsArgs,
    ServingArgs,
    check_db_url,
    fast_path_env,
    max_upload_mb_limit,
)
from serving._stats import RequestStats


# -- the case models ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ({"sepsis_model": "cnn"}, r"'cnn' is a pneumonia model, not a sepsis model: choose one of lstm, transformer"),
        ({"sepsis_model": "mortality-lstm"}, "not a sepsis model"),
        ({"mortality_model": "lstm"}, r"not a mortality model: choose one of mortality-lstm, mortality-transformer"),
        ({"mortality_model": "cnn"}, "not a mortality model"),
    ],
)
def test_a_case_model_must_be_a_model_of_its_task(cases: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        ServingArgs.model_validate({"cases": cases})
    assert info.value.errors()[0]["loc"] == ("cases", next(iter(cases)))


def test_every_model_of_a_task_may_score_its_cases() -> None:
    assert CaseArgs.model_validate({"sepsis_model": "transformer"}).sepsis_model == "transformer"
    assert CaseArgs.model_validate({"mortality_model": "mortality-transformer"}).mortality_model == (
        "mortality-transformer"
    )
    assert CaseArgs().models() == {"xray": "cnn", "sepsis": "lstm", "mortality": "mortality-lstm"}


# -- the upload limit ---------------------------------------------------------------------------------------
def test_the_upload_limit_fits_a_call_between_deployments() -> None:
    limit = max_upload_mb_limit()
    assert limit == (int(fast_path_env()[GRPC_MESSAGE_ENV]) - 1024 * 1024) / (1024 * 1024) == 63
    assert ServingArgs.model_validate({"max_upload_mb": limit}).max_upload_mb == limit
    with pytest.raises(ValidationError, match=rf"max_upload_mb 500 is above 63 MiB.*{GRPC_MESSAGE_ENV}"):
        ServingArgs.model_validate({"max_upload_mb": 500})
    with pytest.raises(ValidationError, match="max_upload_mb"):
        ServingArgs.model_validate({"max_upload_mb": limit + 0.5})


# -- CORS -----------------------------------------------------------------------------------------------------
def test_cors_allows_every_method_of_the_api_by_default() -> None:
    assert CorsArgs().allow_methods == ["GET", "POST", "DELETE"]  # DELETE /v1/cases/{id}


@pytest.fixture
def replica_http() -> Iterator[None]:
    """REPLICA_HTTP as it was before the test configured this process as a replica."""
    saved = {name: getattr(REPLICA_HTTP, name) for name in vars(REPLICA_HTTP)}
    yield
    for name, value in saved.items():
        setattr(REPLICA_HTTP, name, value)


@pytest.mark.usefixtures("replica_http")
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_browser_may_send_each_method_of_the_case_routes(method: str) -> None:
    """A preflight from an allowed origin, with the default methods, to the ingress's case route."""
    import serving.app as app

    args = ServingArgs.model_validate({"cors": {"allow_origins": ["http://localhost:8501"]}})
    configure_replica(args, RequestStats(window_s=60), args.max_upload_bytes)
    client = TestClient(app.fastapi_app, raise_server_exceptions=False)
    r = client.options(
        "/v1/cases/" + "a" * 64,
        headers={"Origin": "http://localhost:8501", "Access-Control-Request-Method": method},
    )
    assert r.status_code == 200, r.text
    assert method in r.headers["access-control-allow-methods"]


# -- the API token ------------------------------------------------------------------------------------------
def test_the_token_comes_from_the_named_variable_without_surrounding_whitespace() -> None:
    args = ServingArgs()
    assert args.auth == "when_set"
    assert args.api_token({}) is None  # unset: no auth, on one machine (make run)
    assert args.api_token({"MEDLENS_API_TOKEN": " s3cret\n"}) == "s3cret"
    other = ServingArgs.model_validate({"auth_token_env": "OTHER_TOKEN", "auth": "required"})
    assert other.api_token({"OTHER_TOKEN": "t", "MEDLENS_API_TOKEN": ""}) == "t"


@pytest.mark.parametrize("auth", ["when_set", "required"])
@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_a_set_but_empty_token_is_a_start_error(auth: str, value: str) -> None:
    args = ServingArgs.model_validate({"auth": auth})
    with pytest.raises(ConfigError, match="MEDLENS_API_TOKEN is set but empty"):
        args.api_token({"MEDLENS_API_TOKEN": value})


def test_required_auth_refuses_to_start_without_the_token() -> None:
    args = ServingArgs.model_validate({"auth": "required", "auth_token_env": "MY_TOKEN"})
    with pytest.raises(ConfigError, match=r"args\.auth is `required` but MY_TOKEN is not set"):
        args.api_token({"MEDLENS_API_TOKEN": "not this one"})


def test_auth_takes_two_values() -> None:
    with pytest.raises(ValidationError, match="'required' or 'when_set'"):
        ServingArgs.model_validate({"auth": "off"})


# -- the case database's URL --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "MEDLENS_DB_URL is not a database URL"),
        # a password's ':' unescaped: the port is not a number (a ValueError in SQLAlchemy, a traceback here)
        ("postgresql://medlens:p@ss:secretpw@db.internal:5432/medlens", "MEDLENS_DB_URL is not a database URL"),
        ("postgresql+psycopg2://u:secretpw@db:5432/medlens", "driver 'postgresql\\+psycopg2', which is not installed"),
        ("postgresql+nosuch://u:secretpw@db/medlens", "driver 'postgresql\\+nosuch', which is not installed"),
        ("postgres://u:secretpw@db/medlens", "names a 'postgres' database, which MedLens cannot use"),
        ("mysql://u:secretpw@db/medlens", r"names a 'mysql' database, which MedLens cannot use \(SQLite or PostgreSQL"),
    ],
)
def test_a_database_url_serving_cannot_open_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        CaseArgs().db_url({"MEDLENS_DB_URL": url})
    assert f"set MEDLENS_DB_URL to {POSTGRES_URL_FORM}" in str(info.value)
    assert "secretpw" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u:p@db:5432/medlens", "postgresql://u:p@db/medlens", "sqlite:////tmp/x.db", "sqlite://"],
)
def test_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    assert CaseArgs().db_url({"MEDLENS_DB_URL": url}) == url
    check_db_url(url, "MEDLENS_DB_URL")


def test_no_database_url_means_the_embedded_sqlite_file() -> None:
    assert CaseArgs().db_url({}) is None
    assert CaseArgs().db_url({"MEDLENS_DB_URL": " "}) is None
    # the variable the args name, not MEDLENS_DB_URL
    cases = CaseArgs.model_validate({"db_url_env": "CASES_DB"})
    assert cases.db_url({"MEDLENS_DB_URL": "not a url"}) is None
    with pytest.raises(ConfigError, match="CASES_DB is not a database URL"):
        cases.db_url({"CASES_DB": "not a url"})
