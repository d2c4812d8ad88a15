"""Who may ask a page (web.access), without a server: loopback addresses and names, and the token rules."""

import pytest

from fer_edge.web.access import FailedTokens, WebError, check_token, read_token


def test_loopback_is_recognised_for_v4_v6_and_names():
    from fer_edge.web.access import is_loopback, is_loopback_name

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert is_loopback_name("[::1]".strip("[]")) and not is_loopback_name("evil.example")


GOOD = "k3Jd9x2Lq8Zm4Pw7Rt6"


@pytest.mark.parametrize("weak, why", [("abcd", "has 4 characters: use at least 16"), ("a" * 20, "mostly repeated"),
                                       ("abcdefghijklmnopqrst", "a run like abcd"), ("qwerty" * 3, "a short part repeated"),
                                       ("k3Jd9x2Lq8 Zm4Pw7Rt6", "a space, line break or control character"),
                                       ("k3Jd9x2Lq8\u202eZm4Pw7Rt6", "control character")])
def test_a_guessable_or_unsendable_token_is_refused(weak, why):
    with pytest.raises(WebError, match=why):
        check_token(weak)


def test_a_random_token_passes_and_a_token_file_others_can_read_is_said(tmp_path):
    check_token(None)
    check_token(GOOD)
    token = tmp_path / "token"
    token.write_text(GOOD)
    token.chmod(0o644)
    said = []
    check_token(GOOD, str(token), said.append)
    assert said == [f"{token} is readable by other users: chmod 600 {token}"]
    token.chmod(0o600)
    check_token(GOOD, str(token), said.append)
    assert len(said) == 1


def test_the_token_comes_from_a_file_systemds_credentials_or_the_environment(tmp_path):
    token = tmp_path / "token"
    token.write_text(f"  {GOOD}\n")
    assert read_token(str(token), {}) == GOOD
    (tmp_path / "web-token").write_text(GOOD + "\n")
    assert read_token(None, {"CREDENTIALS_DIRECTORY": str(tmp_path), "FER_EDGE_WEB_TOKEN": "other"}) == GOOD
    assert read_token(None, {"FER_EDGE_WEB_TOKEN": "from-env"}) == "from-env"
    assert read_token(None, {}) is None
    token.write_text("\n")
    with pytest.raises(WebError, match="the token file is empty"):
        read_token(str(token), {})
    token.write_bytes(b"\xff\xfe" + GOOD.encode())
    with pytest.raises(WebError, match=r"the token file is not UTF-8 text \(invalid start byte at byte 0\)"):
        read_token(str(token), {})


def test_wrong_tokens_from_one_address_are_blocked_and_others_are_not():
    failed = FailedTokens(limit=3)
    for _ in range(3):
        assert not failed.blocked("192.0.2.7")
        failed.failed("192.0.2.7")
    assert failed.blocked("192.0.2.7") and not failed.blocked("192.0.2.8")
