"""Tests of lhymirror.fetch.kaggle (credentials, URLs, instructions) and Kaggle transfers."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path

import pytest
import responses

from factories import blob
from lhymirror.core.errors import UsageError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.sources import kaggle
from lhymirror.fetch.sources.kaggle import KaggleCredentials, load_credentials
from lhymirror.fetch.transfer import ManualStepRequired, Target
from lhymirror.manifest.sources import KaggleSource
from lhymirror.mirror.store import MirrorStore

COMPETITION = "ml2022spring-hw1"
API_FILE = f"https://www.kaggle.com/api/v1/competitions/data/download/{COMPETITION}/covid.train.csv"
STORAGE = "https://storage.googleapis.com/kaggle-competitions-data/hw1/covid.train.csv?sig=x"
CREDS = KaggleCredentials("alice", "s3cr3t-key")
DATA = blob(20_000, 11)


# -- credentials -------------------------------------------------------------------------------


def test_credentials_from_the_environment_win(tmp_path: Path) -> None:
    config = tmp_path / "kaggle.json"
    config.write_text(json.dumps({"username": "file-user", "key": "file-key"}))
    env = {"KAGGLE_USERNAME": "env-user", "KAGGLE_KEY": "env-key"}
    assert load_credentials(env, config) == KaggleCredentials("env-user", "env-key")


def test_credentials_from_kaggle_json(tmp_path: Path) -> None:
    config = tmp_path / "kaggle.json"
    config.write_text(json.dumps({"username": "bob", "key": "k"}))
    assert load_credentials({}, config) == KaggleCredentials("bob", "k")


def test_kaggle_config_dir_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "kaggle.json").write_text(json.dumps({"username": "carol", "key": "k"}))
    env = {"KAGGLE_CONFIG_DIR": str(tmp_path)}
    assert kaggle.default_config_path(env) == tmp_path / "kaggle.json"
    assert load_credentials(env) == KaggleCredentials("carol", "k")


def test_no_credentials_anywhere(tmp_path: Path) -> None:
    assert load_credentials({"KAGGLE_USERNAME": "only-user"}, tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"username": "x"}', '{"username": "", "key": "k"}']
)
def test_unusable_kaggle_json_is_a_clear_error(tmp_path: Path, content: str) -> None:
    config = tmp_path / "kaggle.json"
    config.write_text(content)
    with pytest.raises(UsageError, match="unusable Kaggle credentials") as caught:
        load_credentials({}, config)
    assert str(config) in str(caught.value)
    assert "https://www.kaggle.com/settings" in str(caught.value)


def test_the_key_never_shows_in_a_repr() -> None:
    assert "s3cr3t" not in repr(CREDS)


# -- URLs and instructions -----------------------------------------------------------------------


def test_download_urls() -> None:
    assert kaggle.download_url(KaggleSource(COMPETITION, "covid.train.csv")) == API_FILE
    assert kaggle.download_url(KaggleSource(COMPETITION, "data/a b.csv")).endswith(
        f"/download/{COMPETITION}/data/a%20b.csv"
    )
    assert kaggle.download_url(KaggleSource(COMPETITION)) == (
        f"https://www.kaggle.com/api/v1/competitions/data/download-all/{COMPETITION}"
    )


def test_credentials_only_go_to_the_api_host() -> None:
    assert kaggle.is_api_url(API_FILE)
    assert not kaggle.is_api_url(STORAGE)
    assert not kaggle.is_api_url("http://www.kaggle.com/api/v1/x")


def test_no_credentials_instructions_are_exact() -> None:
    text = kaggle.no_credentials_instructions(KaggleSource(COMPETITION, "x.csv"))
    assert "https://www.kaggle.com/settings" in text
    assert "~/.kaggle/kaggle.json" in text
    assert f"https://www.kaggle.com/c/{COMPETITION}/data" in text
    assert "`lhymirror add`" in text


# -- transfers -----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def kaggle_target(store: MirrorStore) -> Target:
    return Target(
        "hw1-train",
        store.file_path("hw1/covid.train.csv"),
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        "hw1/covid.train.csv",
    )


def downloader(store: MirrorStore, credentials: KaggleCredentials | None = CREDS) -> Downloader:
    return Downloader(
        store,
        policy=RetryPolicy(attempts=2),
        sleep=lambda _: None,
        rng=random.Random(0),
        kaggle_credentials=credentials,
    )


SOURCE = f"kaggle:{COMPETITION}/covid.train.csv"
BASIC = "Basic " + base64.b64encode(b"alice:s3cr3t-key").decode()


@responses.activate
def test_basic_auth_goes_to_kaggle_and_not_to_the_storage_host(store: MirrorStore) -> None:
    responses.get(API_FILE, status=302, headers={"Location": STORAGE})
    responses.get(STORAGE, body=DATA, content_type="text/csv")
    target = kaggle_target(store)

    result = downloader(store).fetch(target, [SOURCE], new_session())

    assert target.final_path.read_bytes() == DATA
    assert result.source == SOURCE
    api, storage = (call.request for call in responses.calls)
    assert api.url == API_FILE and api.headers["Authorization"] == BASIC
    assert storage.url == STORAGE
    assert "Authorization" not in storage.headers


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_refusal_asks_to_accept_the_rules(store: MirrorStore, status: int) -> None:
    responses.get(API_FILE, status=status, json={"code": status, "message": "Forbidden"})
    with pytest.raises(ManualStepRequired) as caught:
        downloader(store).fetch(kaggle_target(store), [SOURCE], new_session())
    error = caught.value
    assert error.instructions == (
        f"accept the competition rules at https://www.kaggle.com/c/{COMPETITION}/rules "
        "(signed in), then run again"
    )
    assert str(error).startswith("manual step needed (hw1/covid.train.csv): ")
    assert f"Kaggle refused the download (HTTP {status})" in str(error)
    assert len(responses.calls) == 1  # not retried


@responses.activate
def test_without_credentials_nothing_is_sent(store: MirrorStore) -> None:
    with pytest.raises(ManualStepRequired) as caught:
        downloader(store, credentials=None).fetch(kaggle_target(store), [SOURCE], new_session())
    assert "https://www.kaggle.com/settings" in caught.value.instructions
    assert "lhymirror add" in caught.value.instructions
    assert len(responses.calls) == 0


@responses.activate
def test_a_manual_kaggle_source_does_not_hide_a_working_mirror(store: MirrorStore) -> None:
    mirror = "https://mirror.example.net/2022/hw1/covid.train.csv"
    responses.get(mirror, body=DATA)
    result = downloader(store, credentials=None).fetch(
        kaggle_target(store), [SOURCE, mirror], new_session()
    )
    assert result.source == mirror
