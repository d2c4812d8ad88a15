"""How errors reach the user."""


from fer_edge.core.errors import UserError, one_line


def test_errors_show_user_errors_alone_and_bugs_with_their_type():
    assert one_line(UserError("camera 0: cannot open")) == "camera 0: cannot open"
    assert one_line(FileNotFoundError(2, "No such file")) == "[Errno 2] No such file"
    bug = one_line(KeyError("frames"))
    assert bug.startswith("KeyError: 'frames'") and "FER_EDGE_DEBUG=1" in bug
