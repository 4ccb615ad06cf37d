"""rodin_jupyter.compat on whichever ipywidgets this virtualenv has (8.1 newest, 7.7 Colab)."""

from __future__ import annotations

from rodin_jupyter.compat import live_widgets, widget_view


def test_a_live_widget_has_its_view_and_a_closed_one_none() -> None:
    import ipywidgets

    button = ipywidgets.Button(description="x")
    try:
        # get_view_spec() is what both ipywidgets 7 and 8 put in the display data.
        assert widget_view(button) == button.get_view_spec()
        assert widget_view(button) == {"version_major": 2, "version_minor": 0,
                                       "model_id": button.model_id}
        assert live_widgets()[button.model_id] is button
    finally:
        button.close()
    assert widget_view(button) is None
    assert button not in live_widgets().values()


def test_widget_view_of_something_that_is_no_widget() -> None:
    assert widget_view(object()) is None
