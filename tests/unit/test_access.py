"""Who may ask a page (web.access), without a server: loopback addresses and names, and the token rules."""





def test_loopback_is_recognised_for_v4_v6_and_names():
    from fer_edge.web.access import is_loopback, is_loopback_name

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert is_loopback_name("[::1]".strip("[]")) and not is_loopback_name("evil.example")
