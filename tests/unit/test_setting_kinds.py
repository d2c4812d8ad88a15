"""The kinds of value a setting holds, on real values: what a flag's text becomes and which
values are refused, with the words the user sees."""

from fer_edge.setting_kinds import DeployKey, HostPort, Name, Number, Threads, TopicPrefix, Valence, thread_count


def test_threads_are_a_number_or_auto_which_is_this_machine_s():
    kind = Threads()
    assert kind.from_text("2") == 2 and kind.problem(2) is None and kind.problem("auto") is None
    assert kind.problem(0) and 1 <= thread_count("auto") <= Threads.AUTO_MAX and thread_count(3) == 3


def test_numbers_keep_their_range():
    assert Number(0, 1).problem(0.5) is None and Number(0, 1).problem(2)
    assert Number(1, integer=True).problem(1.5)


def test_a_topic_prefix_holds_no_wildcard_or_empty_level():
    assert TopicPrefix().problem("fer-edge/site-a") is None
    assert "wildcards" in TopicPrefix().problem("fer-edge/+")
    assert "empty level" in TopicPrefix().problem("fer-edge//a")


def test_an_address_needs_its_port_only_without_a_default():
    assert HostPort(1883).problem("broker.local") is None and HostPort(None).problem("broker.local")


def test_valence_weights_are_label_names_between_minus_one_and_one():
    kind = Valence()
    assert kind.from_text("happy=1, sad=-0.5") == {"happy": 1.0, "sad": -0.5}
    assert kind.problem({"happy": 1.0}) is None and "-1..1" in kind.problem({"happy": 2})
    assert "not a label name" in kind.problem({"Happy!": 1})


def test_a_deploy_key_is_an_ed25519_public_key_file(tmp_path):
    from fer_edge.deploy.order import make_keys

    key_path, pub_path = make_keys(str(tmp_path))
    kind = DeployKey()
    assert kind.problem(pub_path) is None and kind.problem(str(tmp_path / "missing.pub")) == "no such file"
    assert kind.problem(key_path).startswith("a private key; a device takes the public key")
    assert kind.problem(str(tmp_path)) == "no such file"


def test_a_name_is_short_and_printable():
    assert Name().problem("lobby") is None and Name().problem("Hall B (north)") is None
    assert Name().problem("") == "expected a non-empty string" and Name().problem("x" * 65) == "at most 64 characters"
    assert "control characters" in Name().problem("lobby\x1b[2J")
