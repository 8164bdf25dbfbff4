"""Generated NKey identities: what the Secret holds, what the hub config holds, and the upgrade from passwords."""

from __future__ import annotations

import os

import nkeys

from fleetlattice.logic.credentials import Credential, b64
from fleetlattice.render.hub_conf import HubUsers, SiloUser, render_hub_conf
from render_fixtures import HUB, hub_spec


def test_generated_identity_is_a_user_nkey_whose_seed_signs_for_it() -> None:
    cred = Credential.generate("ct-fac")
    assert cred.seed.startswith("SU") and cred.public_key.startswith("U")
    pair = nkeys.from_seed(bytearray(cred.seed.encode()))
    assert pair.public_key.decode() == cred.public_key
    assert Credential.generate("ct-fac").seed != cred.seed


def test_secret_round_trip_with_prefix() -> None:
    cred = Credential.generate("fleet-operator")
    data = cred.secret_data("operator-")
    assert set(data) == {"operator-user", "operator-nkey", "operator-seed"}
    assert Credential.from_secret(data, "operator-") == cred
    assert Credential.from_secret(data) is None


def test_a_password_secret_of_an_older_release_reads_as_no_credential() -> None:
    """The upgrade path: None makes the apply layer generate an NKey and replace the Secret."""
    old = {"user": b64("ct-fac"), "password": b64("s3cret"), "bcrypt": b64("$2b$11$x"), "url": b64("nats://x")}
    assert Credential.from_secret(old) is None


def test_a_seed_that_is_not_a_user_seed_is_refused() -> None:
    account_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT).decode()
    for seed in (account_seed, "SUnot-a-seed", ""):
        assert Credential.from_secret({"user": b64("ct-fac"), "seed": b64(seed)}) is None


def test_the_hub_config_holds_public_keys_only() -> None:
    operator, system, silo = (Credential.generate(u) for u in ("fleet-operator", "sys", "ct-fac"))
    users = HubUsers((operator.user, operator.public_key), (system.user, system.public_key),
                     (SiloUser("ct-fac", silo.public_key),))
    conf = render_hub_conf(HUB, hub_spec(), users).text
    for cred in (operator, system, silo):
        assert cred.public_key in conf
        assert cred.seed not in conf
    assert "password" not in conf
