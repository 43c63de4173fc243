from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from telex.config import ConfigError, GatewayConfig, load
from telex.filters import Filter, FilterError
from telex.gateway.auth import ANONYMOUS, Authenticator, AuthError, Principal


def test_restricted_principal_narrows_or_refuses_filters() -> None:
    wall = Principal("wall", "api_key", frozenset({"a", "b"}))
    assert wall.restrict(Filter()).sources == ("a", "b")
    assert wall.restrict(Filter.parse({"sources": ["a"]})).sources == ("a",)
    with pytest.raises(FilterError, match="forbidden"):
        wall.restrict(Filter.parse({"sources": ["a", "c"]}))
    assert ANONYMOUS.restrict(Filter()) == Filter()


def test_asymmetric_tokens_audience_and_issuer() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    auth = Authenticator(
        GatewayConfig(
            anonymous=False,
            jwt_public_key=public.decode(),
            jwt_audience="telex",
            jwt_issuer="newsroom",
        )
    )
    claims = {"sub": "wall-3", "exp": int(time.time()) + 60, "aud": "telex", "iss": "newsroom"}
    good = jwt.encode({**claims, "sources": ["a"]}, key, algorithm="ES256")
    principal = auth.authenticate({"authorization": f"Bearer {good}"}, {})
    assert principal == Principal("wall-3", "jwt", frozenset({"a"}))
    for bad in (
        jwt.encode({**claims, "aud": "other"}, key, algorithm="ES256"),
        jwt.encode({**claims, "sources": "a"}, key, algorithm="ES256"),
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, key, algorithm="ES256"),
        # An HMAC token signed with the public key as secret (algorithm confusion).
        jwt.encode(claims, "x" * 64, algorithm="HS256"),
    ):
        with pytest.raises(AuthError) as refused:
            auth.authenticate({}, {"token": bad})
        assert refused.value.status == 401
    with pytest.raises(AuthError, match="credentials required"):
        auth.authenticate({}, {})


def test_api_keys_from_the_environment_are_validated() -> None:
    env = {
        "TELEX_GATEWAY_API_KEYS": (
            '[{"name": "wall", "key": "0123456789abcdefXYZ", "sources": ["a"]}]'
        ),
        "TELEX_GATEWAY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
    }
    config = load(None, env).gateway
    assert config.api_keys[0].sources == ("a",)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    auth = Authenticator(config)
    assert auth.authenticate({"x-api-key": "0123456789abcdefXYZ"}, {}).name == "wall"
    auth.check_origin("https://b.example")
    with pytest.raises(AuthError):
        auth.check_origin("https://c.example")
    with pytest.raises(ConfigError, match="api_keys"):
        load(None, {"TELEX_GATEWAY_API_KEYS": "not json"})
    with pytest.raises(ConfigError, match="at least 16"):
        load(None, {"TELEX_GATEWAY_API_KEYS": '[{"name": "w", "key": "short"}]'})
