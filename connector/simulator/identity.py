"""Profile ``call-lists`` identity: OpenID and API discovery, the OIDC password grant and the
access-key token call. Both token calls hand out a JWT carrying ``tenantId``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from aiohttp import web

from connector.simulator.context import SimContext
from connector.simulator.exceptions import ApiError, bad_request
from connector.simulator.httputil import ctx_of, json_response, read_form, read_json
from connector.simulator.tokens import encode_jwt, opaque_token
from connector.simulator.v2 import client_credentials, same_secret

ACCESS_KEY_PATH = "/authentication/v1/token/access-key"


def _origin(request: web.Request) -> str:
    return str(request.url.origin())


async def openid_configuration(request: web.Request) -> web.Response:
    """``GET /.well-known/openid-configuration``."""
    base = _origin(request)
    return json_response({
        "issuer": base,
        "token_endpoint": f"{base}/auth/token",
        "authorization_endpoint": f"{base}/auth/authorize",
        "jwks_uri": f"{base}/auth/jwks",
        "grant_types_supported": ["password"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["HS256"],
    })


async def cxone_configuration(request: web.Request) -> web.Response:
    """``GET /.well-known/cxone-configuration?tenantId=``: where the tenant's API lives.

    Raises:
        ApiError: 400 without ``tenantId``; 404 for another tenant.
    """
    cfg = ctx_of(request).config.call_lists
    tenant = request.query.get("tenantId", "")
    if not tenant:
        raise bad_request("invalid_request", "the tenantId query parameter is required", field="tenantId")
    if tenant != cfg.tenant_id:
        raise ApiError(404, "tenant_not_found", f"no tenant {tenant}")
    return json_response({"api_endpoint": _origin(request), "area": cfg.area, "tenantId": tenant})


def _issue(request: web.Request, ctx: SimContext, audience: str) -> tuple[str, float, dict[str, Any]]:
    """A signed call-lists access token for the configured access key; ``(token, lifetime, claims)``."""
    cfg = ctx.config.call_lists
    lifetime = ctx.faults.token_lifetime(cfg.token_lifetime_s)
    now = ctx.state.clock()
    claims = {"iss": _origin(request), "sub": cfg.access_key_id, "aud": audience, "tenantId": cfg.tenant_id,
              "iat": int(now), "exp": int(now + lifetime), "jti": uuid.uuid4().hex}
    access_token = encode_jwt(claims, cfg.jwt_secret.get().encode())
    ctx.state.issue_token(access_token, "call-lists", audience, (), lifetime, cfg.tenant_id)
    return access_token, lifetime, claims


async def token(request: web.Request) -> web.Response:
    """``POST /auth/token``: password grant with an access key.

    Raises:
        ApiError: 400 ``unsupported_grant_type``/``invalid_grant``, 401 ``invalid_client``.
    """
    ctx = ctx_of(request)
    cfg = ctx.config.call_lists
    form = await read_form(request)
    if form.get("grant_type") != "password":
        raise ApiError(400, "unsupported_grant_type", "grant_type must be password",
                       error_description="grant_type must be password")
    client_id, secret = client_credentials(request, form)
    if client_id != cfg.client_id or not same_secret(secret, cfg.client_secret.get()):
        raise ApiError(401, "invalid_client", "unknown client or wrong client secret",
                       error_description="unknown client or wrong client secret")
    if form.get("username") != cfg.access_key_id or not same_secret(
            form.get("password", ""), cfg.access_key_secret.get()):
        raise ApiError(400, "invalid_grant", "unknown access key or wrong access key secret",
                       error_description="unknown access key or wrong access key secret")
    access_token, lifetime, _ = _issue(request, ctx, client_id)
    return json_response({"access_token": access_token, "token_type": "Bearer",
                          "expires_in": max(1, math.ceil(lifetime)), "issued_token_type": "access_token"})


async def access_key_token(request: web.Request) -> web.Response:
    """``POST /authentication/v1/token/access-key`` with JSON ``{accessKeyId, accessKeySecret}``.

    Answers ``{access_token, token_type, expires_in, refresh_token, id_token}``; both tokens
    are JWTs carrying ``tenantId``.

    Raises:
        ApiError: 400 ``invalid_request`` (not a JSON object of two strings), 401
            ``invalid_access_key`` (unknown key or wrong secret).
    """
    ctx = ctx_of(request)
    cfg = ctx.config.call_lists
    body = await read_json(request)
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k]
                                             for k in ("accessKeyId", "accessKeySecret")):
        raise bad_request("invalid_request", "the body must be {accessKeyId, accessKeySecret}, both strings")
    if body["accessKeyId"] != cfg.access_key_id or not same_secret(
            body["accessKeySecret"], cfg.access_key_secret.get()):
        raise ApiError(401, "invalid_access_key", "unknown access key or wrong access key secret")
    access_token, lifetime, claims = _issue(request, ctx, "access-key")
    id_token = encode_jwt({**claims, "jti": uuid.uuid4().hex}, cfg.jwt_secret.get().encode())
    return json_response({"access_token": access_token, "token_type": "Bearer",
                          "expires_in": max(1, math.ceil(lifetime)), "refresh_token": opaque_token(),
                          "id_token": id_token})


def add_routes(app: web.Application) -> None:
    """Register the identity routes."""
    r = app.router
    r.add_get("/.well-known/openid-configuration", openid_configuration)
    r.add_get("/.well-known/cxone-configuration", cxone_configuration)
    r.add_post("/auth/token", token)
    r.add_post(ACCESS_KEY_PATH, access_key_token)
