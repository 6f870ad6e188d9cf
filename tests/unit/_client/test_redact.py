"""Every form a credential takes in text that came back from the network is masked."""

from __future__ import annotations

import base64
from urllib.parse import quote

from airflow_provider_gong._client.redact import MASK, Redactor


def test_raw_pair_base64_and_url_encoded_forms_are_masked():
    redact = Redactor.for_credentials(access_key="key-1", access_key_secret="s/cr+t=1", access_token=None)
    pair = "key-1:s/cr+t=1"
    text = " ".join(["s/cr+t=1", pair, base64.b64encode(pair.encode()).decode(), quote("s/cr+t=1", safe="")])
    assert redact(text) == " ".join([MASK] * 4)


def test_the_pair_goes_before_its_secret_so_nothing_is_half_masked():
    redact = Redactor.for_credentials(access_key="key-1", access_key_secret="secret-1", access_token=None)
    assert redact("sent key-1:secret-1") == f"sent {MASK}"


def test_short_values_and_non_text_are_left_alone():
    redact = Redactor(["abcd", "longer-secret"])
    assert redact("abcd longer-secret") == f"abcd {MASK}"
    assert redact(None) is None and redact(42) == 42


def test_a_token_learnt_later_is_masked_from_then_on():
    redact = Redactor([])
    assert redact("rotated-token") == "rotated-token"
    redact.add("rotated-token")
    assert redact("got rotated-token") == f"got {MASK}"
