"""Label names: the aliases public sets use, the form a model's labels take, their colours."""

from fer_edge.core.labels import LABELS, canonical, colour, label_problem, palette, pleasant_first


def test_folder_names_become_labels():
    assert [canonical(n) for n in ("Anger", "happiness", "surprised ", "Thumbs Up", "contempt")] == \
        ["angry", "happy", "surprise", "thumbs_up", "contempt"]


def test_a_label_set_is_short_lowercase_names_without_repeats():
    assert label_problem(list(LABELS)) is None and label_problem(["yes", "no"]) is None
    assert "2..32" in label_problem(["only"]) and "2..32" in label_problem("angry")
    assert "lowercase" in label_problem(["ok", "Not OK"]) and "repeat" in label_problem(["a", "a"])


def test_every_label_gets_a_stable_colour_and_a_place_in_a_chart():
    assert palette(LABELS)["happy"] == colour("happy") and colour("confused") == colour("confused")
    assert colour("confused").startswith("#") and len(colour("confused")) == 7
    assert pleasant_first(("confused", "sad", "happy")) == ("happy", "sad", "confused")
